#pragma once
// Small POSIX file helpers. osd avoids std::filesystem: pip's libtorch.so exports its own copies
// of std::filesystem symbols, and calls from osd resolved to them crashed (remove_all, seen on
// the GPU host with torch 2.11).
#include <nlohmann/json_fwd.hpp>

#include <string>

namespace osd::files {

void make_dirs(const std::string& path);                        // mkdir -p; throws osd::Error
void rename(const std::string& from, const std::string& to);    // throws osd::Error
void remove_tree(const std::string& path);                      // rm -rf; missing is fine
bool exists(const std::string& path);
bool is_dir(const std::string& path);
// The whole file; throws osd::Error("<path>: cannot open (<reason>)") if it cannot be read.
std::string read_all(const std::string& path);
// The file parsed as JSON; throws osd::Error naming the path: cannot open, or invalid JSON.
nlohmann::json read_json(const std::string& path);
std::string temp_dir();                                          // $TMPDIR or /tmp

}  // namespace osd::files
