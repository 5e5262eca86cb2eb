#pragma once
// Where two JSON documents first differ: what a resumed run or sweep cell reports when its recorded settings
// and the ones given now disagree. Header-only (nlohmann-json is header-only too).
#include <nlohmann/json.hpp>

#include <string>

namespace modiff {

struct JsonDifference {
  std::string path;        // keys joined by " > " ("hyperparameters > policy.lr"); empty: the documents agree
  nlohmann::json was, now;  // the two values there ("(none)" where a key is missing)
  bool found() const { return !path.empty(); }
};

// The first differing key in `now`'s order, then keys only `was` has; the whole documents when they are
// not both objects.
inline JsonDifference first_difference(const nlohmann::json& was, const nlohmann::json& now,
                                       const std::string& prefix = "") {
  const auto at = [&](const std::string& key) { return prefix.empty() ? key : prefix + " > " + key; };
  if (!was.is_object() || !now.is_object())
    return was == now ? JsonDifference{} : JsonDifference{prefix.empty() ? "(the whole document)" : prefix, was, now};
  for (auto it = now.begin(); it != now.end(); ++it) {
    if (!was.contains(it.key())) return {at(it.key()), "(none)", it.value()};
    if (auto d = first_difference(was.at(it.key()), it.value(), at(it.key())); d.found()) return d;
  }
  for (auto it = was.begin(); it != was.end(); ++it)
    if (!now.contains(it.key())) return {at(it.key()), it.value(), "(none)"};
  return {};
}

}  // namespace modiff
