#pragma once
// Distillation records and their file format (no torch: the reader is fuzzed).
//
// A records file (a route's held-out slice, kept across restarts) is "OSDRECS2", the payload's
// length (uint64) and CRC-32 (uint32), then the payload: a count and each record's fields. The
// length and checksum catch a torn or corrupt file; files of the older format ("OSDRECS1", no
// length or checksum) still load.
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

namespace osd {

struct DistillRecord {
  std::vector<int64_t> context;  // the teacher distribution is for the token after these
  std::vector<int64_t> top_ids;
  std::vector<float> top_probs;
  float tail = 0;                // mass outside top_ids
  int64_t route = 0;             // which draft (domain) the record belongs to
  int64_t source = 0;            // the request it came from (the verifier's sequence id)
  bool greedy = false;           // the request decoded greedily: acceptance is argmax agreement
  bool prompt = false;  // a position of the prompt (the target's prefill), not a verified one
  size_t bytes() const {
    return sizeof(DistillRecord) + context.size() * 8 + top_ids.size() * 8 + top_probs.size() * 4;
  }
};

// The file's bytes for records, and back; decode_records throws osd::Error naming `name` when
// the bytes are truncated, corrupt (checksum) or malformed.
std::string encode_records(const std::vector<DistillRecord>& records);
std::vector<DistillRecord> decode_records(const std::string& bytes, const std::string& name);

// save_records writes durably, keeping the file it replaces as path.previous; load_records
// throws osd::Error naming the file when it is missing, truncated or corrupt.
void save_records(const std::string& path, const std::vector<DistillRecord>& records);
std::vector<DistillRecord> load_records(const std::string& path);

// The newest good version: path, else path.previous (with a warning saying what was wrong with
// path). Throws osd::Error (what is wrong with each) when neither loads.
struct LoadedRecords {
  std::vector<DistillRecord> records;
  std::string from;     // the file read
  std::string warning;  // set when path was damaged and path.previous was used
};
LoadedRecords load_newest_records(const std::string& path);

}  // namespace osd
