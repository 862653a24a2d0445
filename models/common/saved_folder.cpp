#include "models/common/saved_folder.hpp"

#include <nlohmann/json.hpp>

#include "models/common/error.hpp"
#include "models/common/files.hpp"

namespace osd::files {

namespace {

std::string partial_of(const std::string& dir) { return dir + ".partial"; }

// Every file under root (relative paths), depth first; folders are fsynced on the way.
void collect(const std::string& root, const std::string& rel, nlohmann::json& out) {
  const std::string here = rel.empty() ? root : root + "/" + rel;
  for (const auto& name : list_dir(here)) {
    const std::string child = rel.empty() ? name : rel + "/" + name;
    if (is_dir(root + "/" + child)) {
      collect(root, child, out);
      sync_dir(root + "/" + child);
    } else if (child != kChecksumsFile) {
      sync_file(root + "/" + child);
      out[child] = {{"bytes", file_size(root + "/" + child)},
                    {"crc32", file_crc32(root + "/" + child)}};
    }
  }
}

}  // namespace

// Removes a folder by renaming it first, so a crash never leaves a half-removed version that
// still looks complete.
void remove_folder(const std::string& path) {
  if (!exists(path)) return;
  const std::string doomed = path + ".removing";
  remove_tree(doomed);
  rename(path, doomed);
  remove_tree(doomed);
}

// Renames staging over dir, keeping dir as dir.previous; fsyncs the parent.
void swap_in(const std::string& dir) {
  const std::string previous = previous_of(dir);
  remove_folder(previous);
  if (exists(dir)) rename(dir, previous);
  rename(partial_of(dir), dir);
  sync_dir(parent_dir(dir));
}

bool usable(FolderState s) { return s == FolderState::intact || s == FolderState::unchecked; }

std::string begin_folder(const std::string& dir) {
  const std::string staging = partial_of(dir);
  // A sealed dir.partial is a commit a crash interrupted between its renames: finish it first,
  // so the newest complete version is not removed while the next one is written.
  if (!usable(check_folder(dir).state) && check_folder(staging).state == FolderState::intact) swap_in(dir);
  remove_folder(staging);
  make_dirs(staging);
  return staging;
}

void commit_folder(const std::string& dir) {
  const std::string staging = partial_of(dir);
  if (!is_dir(staging)) throw Error(staging + ": nothing to commit");
  nlohmann::json sums = nlohmann::json::object();
  collect(staging, "", sums);
  write_durable(staging + "/" + kChecksumsFile, nlohmann::json{{"files", sums}}.dump(1) + "\n");
  sync_dir(staging);
  swap_in(dir);
}

FolderCheck check_folder(const std::string& path) {
  FolderCheck out;
  if (!is_dir(path)) return out;
  const std::string sums_path = path + "/" + kChecksumsFile;
  if (!exists(sums_path)) {
    out.state = FolderState::unchecked;
    return out;
  }
  out.state = FolderState::damaged;
  nlohmann::json sums;
  try {
    sums = read_json(sums_path).at("files");
    if (!sums.is_object()) throw Error("\"files\" is not an object");
  } catch (const std::exception& e) {
    out.problem = std::string(kChecksumsFile) + ": " + e.what();
    return out;
  }
  for (const auto& [name, want] : sums.items()) {
    const std::string file = path + "/" + name;
    try {
      if (!exists(file)) {
        out.problem = name + ": missing";
        return out;
      }
      const auto bytes = file_size(file);
      const auto want_bytes = want.at("bytes").get<uint64_t>();
      if (bytes != want_bytes) {
        out.problem = name + ": " + std::to_string(bytes) + " bytes, expected " + std::to_string(want_bytes) +
                      " (torn or truncated)";
        return out;
      }
      if (file_crc32(file) != want.at("crc32").get<uint32_t>()) {
        out.problem = name + ": checksum mismatch (corrupt)";
        return out;
      }
    } catch (const std::exception& e) {
      out.problem = name + ": " + e.what();
      return out;
    }
  }
  out.state = FolderState::intact;
  return out;
}

FolderChoice choose_folder(const std::string& dir) {
  FolderChoice out;
  std::string problems;
  auto note = [&](const std::string& path, const std::string& problem) {
    problems += (problems.empty() ? "" : "; ") + path + ": " + problem;
  };
  const auto current = check_folder(dir);
  if (usable(current.state)) {
    out.path = dir;
    return out;
  }
  if (current.state == FolderState::damaged) note(dir, current.problem);
  // A commit interrupted between its renames: the new version is complete in dir.partial (the
  // next begin_folder finishes the commit; reading changes nothing).
  const std::string staging = partial_of(dir);
  if (check_folder(staging).state == FolderState::intact) {
    out.path = staging;
    out.warning = problems;
    return out;
  }
  const auto previous = check_folder(previous_of(dir));
  if (usable(previous.state)) {
    out.path = previous_of(dir);
    if (problems.empty()) note(dir, "missing");
    out.warning = problems + "; using the previous version " + out.path;
    return out;
  }
  if (previous.state == FolderState::damaged) note(previous_of(dir), previous.problem);
  out.warning = problems;
  return out;
}

}  // namespace osd::files
