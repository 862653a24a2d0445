#pragma once
// A folder written as a whole, with checksums, keeping the version before it (the online
// distiller's state, osd-train's checkpoints).
//
//   auto staging = files::begin_folder(dir);   // dir.partial, empty
//   ... write the files into staging ...
//   files::commit_folder(dir);                  // dir.partial -> dir, dir -> dir.previous
//   auto chosen = files::choose_folder(dir);    // at start: dir, else dir.previous (+ warning)
//
// commit_folder fsyncs every file, writes checksums.json (each file's size and CRC-32), fsyncs
// it, then renames: the current dir becomes dir.previous (the one before it is removed) and
// dir.partial becomes dir; the parent folder is fsynced. A crash at any moment leaves a
// complete, checksummed version to read: dir, or (between the two renames) dir.partial, whose
// commit the next begin_folder finishes, or dir.previous. Reading never changes the folders; one
// writer at a time.
#include <string>

namespace osd::files {

constexpr const char* kChecksumsFile = "checksums.json";

// Empties and creates dir.partial and returns its path (first finishing a commit a crash
// interrupted, so the newest complete version stays).
std::string begin_folder(const std::string& dir);
// Seals dir.partial (checksums.json) and swaps it in as dir; dir's old content becomes
// dir.previous. Throws osd::Error naming the path on an I/O failure (dir is then unchanged).
void commit_folder(const std::string& dir);

enum class FolderState { intact, unchecked, damaged, missing };
struct FolderCheck {
  FolderState state = FolderState::missing;
  std::string problem;  // for damaged: which file and how ("model.safetensors: 1234 bytes, expected 5678")
};
// Checks the files checksums.json lists: sizes and CRC-32s. A folder without checksums.json is
// "unchecked" (written before checksums, or by another tool).
FolderCheck check_folder(const std::string& path);

struct FolderChoice {
  std::string path;     // the folder to read; "" when none is usable
  std::string warning;  // set when the newest version was damaged and an older one is used, or
                        // when none is usable (then: what is wrong with each)
};
// The newest usable version of dir: dir when intact or unchecked; else a sealed dir.partial (an
// interrupted commit); else dir.previous when intact or unchecked. Changes nothing on disk.
FolderChoice choose_folder(const std::string& dir);
// The same for a file written with write_durable(..., keep_previous = true): path, else
// path.previous. `check(candidate)` returns "" when the candidate is good, else what is wrong
// with it (naming the file).
template <class Check>
FolderChoice choose_file(const std::string& path, Check check);

}  // namespace osd::files

#include "models/common/files.hpp"

template <class Check>
osd::files::FolderChoice osd::files::choose_file(const std::string& path, Check check) {
  FolderChoice out;
  std::string problems;
  for (const auto& candidate : {path, previous_of(path)}) {
    if (!exists(candidate)) continue;
    std::string problem = check(candidate);
    if (problem.empty()) {
      out.path = candidate;
      if (!problems.empty()) out.warning = problems + "; using " + candidate;
      return out;
    }
    problems += (problems.empty() ? "" : "; ") + problem;
  }
  out.warning = problems;
  return out;
}
