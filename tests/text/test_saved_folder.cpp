// Crash-safe files (models/common/files.hpp, saved_folder.hpp): durable writes keep the file they
// replace; a folder is committed whole with checksums; a torn, truncated or corrupt version is
// detected and the one before it is used, with a warning; an interrupted commit is finished.
#include <catch2/catch.hpp>

#include <unistd.h>

#include <fstream>
#include <string>

#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/common/saved_folder.hpp"

using namespace osd;

namespace {

std::string temp_root(const std::string& name) {
  const auto dir = files::temp_dir() + "/osd-saved-" + std::to_string(::getpid()) + "-" + name;
  files::remove_tree(dir);
  files::make_dirs(dir);
  return dir;
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// A folder version holding two files with the given contents, committed.
void save_version(const std::string& dir, const std::string& a, const std::string& b) {
  const auto staging = files::begin_folder(dir);
  write_text(staging + "/a.txt", a);
  files::make_dirs(staging + "/sub");
  write_text(staging + "/sub/b.txt", b);
  files::commit_folder(dir);
}

}  // namespace

TEST_CASE("files: write_durable replaces a file and keeps the one before", "[files]") {
  const auto root = temp_root("durable");
  const auto path = root + "/x.bin";
  files::write_durable(path, "one", true);
  CHECK(files::read_all(path) == "one");
  CHECK(!files::exists(files::previous_of(path)));
  files::write_durable(path, "two", true);
  CHECK(files::read_all(path) == "two");
  CHECK(files::read_all(files::previous_of(path)) == "one");
  files::write_durable(path, "three");  // without keep_previous: .previous stays as it was
  CHECK(files::read_all(path) == "three");
  CHECK(files::read_all(files::previous_of(path)) == "one");
  CHECK(!files::exists(path + ".tmp"));
  CHECK(files::crc32("123456789") == 0xCBF43926u);  // the CRC-32 check value
  CHECK(files::file_crc32(path) == files::crc32("three"));
  files::remove_tree(root);
}

TEST_CASE("files: choose_file falls back to the previous version, with a warning", "[files]") {
  const auto root = temp_root("choose-file");
  const auto path = root + "/x.bin";
  files::write_durable(path, "good", true);
  files::write_durable(path, "bad!", true);
  auto check = [](const std::string& p) { return files::read_all(p) == "good" ? "" : p + ": corrupt"; };
  auto c = files::choose_file(path, check);
  CHECK(c.path == files::previous_of(path));
  CHECK(c.warning.find("x.bin: corrupt") != std::string::npos);
  CHECK(c.warning.find("using") != std::string::npos);
  files::write_durable(path, "good", true);  // good now, previous bad
  c = files::choose_file(path, check);
  CHECK(c.path == path);
  CHECK(c.warning.empty());
  files::remove_tree(root);
}

TEST_CASE("saved folder: commits whole, detects a damaged version and falls back", "[files]") {
  const auto root = temp_root("folder");
  const auto dir = root + "/state";
  auto none = files::choose_folder(dir);
  CHECK(none.path.empty());
  CHECK(none.warning.empty());
  save_version(dir, "first a", "first b");
  CHECK(files::check_folder(dir).state == files::FolderState::intact);
  save_version(dir, "second a", "second b");
  CHECK(files::read_all(dir + "/a.txt") == "second a");
  CHECK(files::read_all(files::previous_of(dir) + "/sub/b.txt") == "first b");
  CHECK(!files::exists(dir + ".partial"));

  SECTION("intact: the newest") {
    auto c = files::choose_folder(dir);
    CHECK(c.path == dir);
    CHECK(c.warning.empty());
  }
  SECTION("a truncated file") {
    write_text(dir + "/sub/b.txt", "second");
    auto check = files::check_folder(dir);
    CHECK(check.state == files::FolderState::damaged);
    CHECK(check.problem.find("sub/b.txt") != std::string::npos);
    CHECK(check.problem.find("truncated") != std::string::npos);
    auto c = files::choose_folder(dir);
    CHECK(c.path == files::previous_of(dir));
    CHECK(c.warning.find("sub/b.txt") != std::string::npos);
  }
  SECTION("a corrupt file of the same size") {
    write_text(dir + "/a.txt", "secXnd a");
    CHECK(files::check_folder(dir).problem.find("checksum") != std::string::npos);
    CHECK(files::choose_folder(dir).path == files::previous_of(dir));
  }
  SECTION("a missing file, or missing checksums") {
    std::remove((dir + "/a.txt").c_str());
    CHECK(files::choose_folder(dir).path == files::previous_of(dir));
  }
  SECTION("checksums.json corrupt") {
    write_text(dir + "/" + files::kChecksumsFile, "{oops");
    auto c = files::choose_folder(dir);
    CHECK(c.path == files::previous_of(dir));
    CHECK(c.warning.find("checksums.json") != std::string::npos);
  }
  SECTION("both damaged: no usable version, and the warning names each") {
    write_text(dir + "/a.txt", "x");
    write_text(files::previous_of(dir) + "/a.txt", "y");
    auto c = files::choose_folder(dir);
    CHECK(c.path.empty());
    CHECK(c.warning.find(dir + ":") != std::string::npos);
    CHECK(c.warning.find(files::previous_of(dir) + ":") != std::string::npos);
  }
  SECTION("a crash between the commit's renames: the complete partial is finished") {
    // State after rename(dir, dir.previous) and before rename(dir.partial, dir).
    const auto staging = files::begin_folder(dir);
    write_text(staging + "/a.txt", "third a");
    files::make_dirs(staging + "/sub");
    write_text(staging + "/sub/b.txt", "third b");
    // Seal it as commit_folder would, then stop before the swap.
    save_version(root + "/scratch", "third a", "third b");
    files::rename(root + "/scratch/" + files::kChecksumsFile, staging + "/" + files::kChecksumsFile);
    files::remove_tree(files::previous_of(dir));
    files::rename(dir, files::previous_of(dir));
    auto c = files::choose_folder(dir);
    CHECK(c.path == dir + ".partial");  // read where it is; nothing moves
    CHECK(files::read_all(c.path + "/a.txt") == "third a");
    // The next write finishes that commit first: "third" becomes the previous version.
    const auto next = files::begin_folder(dir);
    write_text(next + "/a.txt", "fourth a");
    files::commit_folder(dir);
    CHECK(files::read_all(dir + "/a.txt") == "fourth a");
    CHECK(files::read_all(files::previous_of(dir) + "/a.txt") == "third a");
    CHECK(files::choose_folder(dir).path == dir);
  }
  SECTION("an interrupted write (no checksums in the partial) leaves the last commit") {
    const auto staging = files::begin_folder(dir);
    write_text(staging + "/a.txt", "half");
    auto c = files::choose_folder(dir);
    CHECK(c.path == dir);
    CHECK(files::read_all(dir + "/a.txt") == "second a");
  }
  files::remove_tree(root);
}

TEST_CASE("saved folder: a folder without checksums (older layout) is read unchecked", "[files]") {
  const auto root = temp_root("legacy");
  const auto dir = root + "/state";
  files::make_dirs(dir);
  write_text(dir + "/a.txt", "legacy");
  CHECK(files::check_folder(dir).state == files::FolderState::unchecked);
  auto c = files::choose_folder(dir);
  CHECK(c.path == dir);
  CHECK(c.warning.empty());
  files::remove_tree(root);
}
