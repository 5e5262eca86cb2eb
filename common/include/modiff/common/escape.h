#pragma once
// Escaping for where a string goes. Every string that comes from the data or a user (dataset and cell
// names, values, sources) is escaped: a name like `<img src=x onerror=...>` stays text in HTML, a `|` stays
// inside its Markdown cell, a comma inside its CSV field.
#include <string>

namespace modiff {

// HTML text and attribute values: & < > " ' as entities.
std::string html_escaped(const std::string& s);
// Markdown: HTML's specials as entities (Markdown passes inline HTML through), its own punctuation
// backslash-escaped, line breaks as spaces (they would end a table row).
std::string markdown_escaped(const std::string& s);
// RFC 4180: a field with a comma, quote or line break goes in quotes, its quotes doubled.
std::string csv_field(const std::string& s);

}  // namespace modiff
