#pragma once
// The process's peak resident set size (VmHWM), resettable on Linux (writing
// 5 to /proc/self/clear_refs), so that a training phase can report its own peak.
namespace modiff {

long peak_rss_bytes();   // 0 when unknown
void reset_peak_rss();   // best effort; a later peak_rss_bytes() then starts from the current RSS

}  // namespace modiff
