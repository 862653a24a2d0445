#pragma once
// Small POSIX file helpers. osd avoids std::filesystem: pip's libtorch.so exports its own copies
// of std::filesystem symbols, and calls from osd resolved to them crashed (remove_all, seen on
// the GPU host with torch 2.11).
//
// Files osd writes for later (draft weights, optimizer state, records, checkpoints) go through
// write_durable / commit_file: written under a temporary name, fsynced, renamed over the old
// one, and the folder fsynced, so a crash (kill -9, power loss) leaves the old file or the new
// one, never a torn one. Folders written as a whole go through saved_folder.hpp.
#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace osd::files {

void make_dirs(const std::string& path);                        // mkdir -p; throws osd::Error
void rename(const std::string& from, const std::string& to);    // throws osd::Error
void remove_tree(const std::string& path);                      // rm -rf; missing is fine
bool exists(const std::string& path);
bool is_dir(const std::string& path);
uint64_t file_size(const std::string& path);                    // 0 when it cannot be read
// The whole file; throws osd::Error("<path>: cannot open (<reason>)") if it cannot be read.
std::string read_all(const std::string& path);
// The file parsed as JSON; throws osd::Error naming the path: cannot open, or invalid JSON.
nlohmann::json read_json(const std::string& path);
std::string temp_dir();                                          // $TMPDIR or /tmp
// Names in a folder (no "." and ".."), sorted; empty when it cannot be read.
std::vector<std::string> list_dir(const std::string& dir);
std::string parent_dir(const std::string& path);                 // "." for a bare name

// fsync a file's data (or a folder's entries) to the disk; throws osd::Error naming the path.
void sync_file(const std::string& path);
void sync_dir(const std::string& dir);
// `tmp` (complete, written by the caller) replaces `path`: fsync tmp, rename, fsync the folder.
void commit_file(const std::string& tmp, const std::string& path);
// Writes `bytes` to `path` durably (path.tmp, fsync, rename, fsync the folder). With
// keep_previous the file it replaces stays as path.previous (a hard link made before the
// rename), so `path` always exists and a reader that finds it damaged can fall back.
void write_durable(const std::string& path, const std::string& bytes, bool keep_previous = false);
std::string previous_of(const std::string& path);                // path + ".previous"

// CRC-32 (zlib's) of bytes, or of a file's bytes (streamed; throws osd::Error if unreadable).
uint32_t crc32(const std::string& bytes, uint32_t crc = 0);
uint32_t file_crc32(const std::string& path);

}  // namespace osd::files
