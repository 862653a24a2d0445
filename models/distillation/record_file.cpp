#include "models/distillation/record_file.hpp"

#include <cstring>

#include "models/common/error.hpp"
#include "models/common/files.hpp"
#include "models/common/saved_folder.hpp"

namespace osd {

namespace {

constexpr char kMagicV1[8] = {'O', 'S', 'D', 'R', 'E', 'C', 'S', '1'};  // no length, no checksum
constexpr char kMagicV2[8] = {'O', 'S', 'D', 'R', 'E', 'C', 'S', '2'};
constexpr size_t kHeaderV2 = 8 + 8 + 4;  // magic, payload length, payload CRC-32

template <class T>
void put(std::string& out, const T& v) {
  out.append(reinterpret_cast<const char*>(&v), sizeof(T));
}
template <class T>
void put_vector(std::string& out, const std::vector<T>& v) {
  put(out, static_cast<uint64_t>(v.size()));
  out.append(reinterpret_cast<const char*>(v.data()), v.size() * sizeof(T));
}

// Reads fields off a file's bytes; every read is bounds-checked.
struct RecordReader {
  const std::string& bytes;
  const std::string& name;
  size_t at = 0;
  void need(size_t n) {
    if (n > bytes.size() - at)
      throw Error("distillation records " + name + ": truncated at byte " + std::to_string(at));
  }
  template <class T>
  T get() {
    need(sizeof(T));
    T v;
    std::memcpy(&v, bytes.data() + at, sizeof(T));
    at += sizeof(T);
    return v;
  }
  template <class T>
  std::vector<T> get_vector() {
    const auto n = get<uint64_t>();
    if (n > (bytes.size() - at) / sizeof(T))
      throw Error("distillation records " + name + ": a length of " + std::to_string(n) +
                  " at byte " + std::to_string(at) + " runs past the end");
    std::vector<T> v(n);
    if (n) std::memcpy(v.data(), bytes.data() + at, n * sizeof(T));
    at += n * sizeof(T);
    return v;
  }
};

// The records of a payload (a count, then the records) that starts at `start`.
std::vector<DistillRecord> parse(const std::string& bytes, const std::string& name, size_t start) {
  RecordReader in{bytes, name, start};
  const auto n = in.get<uint64_t>();
  std::vector<DistillRecord> out;
  for (uint64_t i = 0; i < n; ++i) {
    DistillRecord r;
    r.route = in.get<int64_t>();
    r.source = in.get<int64_t>();
    r.greedy = in.get<uint8_t>() != 0;
    r.prompt = in.get<uint8_t>() != 0;
    r.tail = in.get<float>();
    r.context = in.get_vector<int64_t>();
    r.top_ids = in.get_vector<int64_t>();
    r.top_probs = in.get_vector<float>();
    if (r.top_ids.size() != r.top_probs.size() || r.context.empty())
      throw Error("distillation records " + name + ": record " + std::to_string(i) + " has " +
                  std::to_string(r.top_ids.size()) + " ids, " + std::to_string(r.top_probs.size()) +
                  " probabilities and " + std::to_string(r.context.size()) + " context tokens");
    out.push_back(std::move(r));
  }
  if (in.at != bytes.size())
    throw Error("distillation records " + name + ": " + std::to_string(bytes.size() - in.at) +
                " bytes after the last record");
  return out;
}

}  // namespace

std::string encode_records(const std::vector<DistillRecord>& records) {
  std::string payload;
  put(payload, static_cast<uint64_t>(records.size()));
  for (const auto& r : records) {
    put(payload, r.route);
    put(payload, r.source);
    put(payload, static_cast<uint8_t>(r.greedy));
    put(payload, static_cast<uint8_t>(r.prompt));
    put(payload, r.tail);
    put_vector(payload, r.context);
    put_vector(payload, r.top_ids);
    put_vector(payload, r.top_probs);
  }
  std::string out(kMagicV2, sizeof(kMagicV2));
  put(out, static_cast<uint64_t>(payload.size()));
  put(out, files::crc32(payload));
  return out + payload;
}

std::vector<DistillRecord> decode_records(const std::string& bytes, const std::string& name) {
  if (bytes.size() >= 8 && std::memcmp(bytes.data(), kMagicV1, 8) == 0) return parse(bytes, name, 8);
  if (bytes.size() < 8 || std::memcmp(bytes.data(), kMagicV2, 8) != 0)
    throw Error("distillation records " + name + ": not an osd records file (bad magic)");
  if (bytes.size() < kHeaderV2)
    throw Error("distillation records " + name + ": truncated in the header (" + std::to_string(bytes.size()) +
                " bytes)");
  uint64_t length = 0;
  uint32_t crc = 0;
  std::memcpy(&length, bytes.data() + 8, 8);
  std::memcpy(&crc, bytes.data() + 16, 4);
  const uint64_t have = bytes.size() - kHeaderV2;
  if (have < length)
    throw Error("distillation records " + name + ": truncated (" + std::to_string(have) + " of " +
                std::to_string(length) + " payload bytes)");
  if (have > length)
    throw Error("distillation records " + name + ": " + std::to_string(have - length) +
                " bytes after the last record");
  if (files::crc32(bytes.substr(kHeaderV2)) != crc)
    throw Error("distillation records " + name + ": checksum mismatch (corrupt)");
  return parse(bytes, name, kHeaderV2);
}

void save_records(const std::string& path, const std::vector<DistillRecord>& records) {
  files::write_durable(path, encode_records(records), /*keep_previous=*/true);
}

std::vector<DistillRecord> load_records(const std::string& path) {
  if (!files::exists(path)) throw Error("distillation records " + path + ": no such file");
  return decode_records(files::read_all(path), path);
}

LoadedRecords load_newest_records(const std::string& path) {
  LoadedRecords out;
  std::string last_error;
  auto choice = files::choose_file(path, [&](const std::string& candidate) -> std::string {
    try {
      out.records = load_records(candidate);
      return "";
    } catch (const std::exception& e) {
      return last_error = e.what();
    }
  });
  if (choice.path.empty())
    throw Error(choice.warning.empty() ? "distillation records " + path + ": no such file" : choice.warning);
  out.from = choice.path;
  out.warning = choice.warning;
  return out;
}

}  // namespace osd
