// A direct, bounds-checked reader of the fields a consumer needs from a
// stored message record, without building a Cap'n Proto MessageReader.
//
// Receiving spends most of its time decoding records, and capnp's generic
// reader (arena, segment table, per-field pointer validation) costs several
// times more than the handful of loads these fields need. This reader knows
// the layout of MessageRecord (lib/schema/record.capnp, Cap'n Proto's
// encoding spec) and reads it directly:
//
//   word 0            segment table: (segment count - 1) u32, words u32
//   word 1            root struct pointer
//   data section      queue u32 @0, offset u64 @8, bornTimeMs @16,
//                     storeTimeMs @24
//   pointer section   id, topic, key, tags, properties, body
//
// Every offset is checked against the record's bounds, so a damaged record
// is reported, never read out of bounds. Records it does not handle (more
// than one segment, far pointers; the writer never produces them) are
// left to Cap'n Proto. tests/log/record_layout_test.cc checks it against
// Cap'n Proto's own decoder.

#ifndef TXMQ_LIB_LOG_RECORD_LAYOUT_H_
#define TXMQ_LIB_LOG_RECORD_LAYOUT_H_

#include <bit>
#include <cstdint>
#include <cstring>
#include <string_view>

namespace txmq {

struct HotFields {
  std::string_view id;
  std::string_view key;
  std::string_view body;
  uint32_t queue = 0;
  uint64_t offset = 0;
  int64_t born_ms = 0;
  int64_t store_ms = 0;
};

enum class LayoutResult {
  kOk,
  kUnsupported,  // valid Cap'n Proto this reader does not handle
  kMalformed,    // not a valid record
};

namespace record_layout_internal {

static_assert(std::endian::native == std::endian::little,
              "Cap'n Proto's wire format is little-endian; this reader loads "
              "words directly");

// Pointer indices and data offsets of MessageRecord (record.capnp).
constexpr uint32_t kIdPointer = 0;
constexpr uint32_t kKeyPointer = 2;
constexpr uint32_t kTagsPointer = 3;
constexpr uint32_t kBodyPointer = 5;
constexpr uint32_t kQueueByte = 0;
constexpr uint32_t kOffsetByte = 8;
constexpr uint32_t kBornByte = 16;
constexpr uint32_t kStoreByte = 24;

constexpr uint64_t kByteElements = 2;     // Cap'n Proto list element size code
constexpr uint64_t kPointerElements = 6;  // a list of pointers

// The signed offset, in words, of a struct or list pointer.
inline int64_t PointerOffset(uint64_t pointer) {
  return static_cast<int32_t>(static_cast<uint32_t>(pointer)) >> 2;
}

template <typename T>
inline T Field(const char* data, uint64_t data_bytes, uint32_t at) {
  T value = 0;
  if (at + sizeof(T) <= data_bytes) std::memcpy(&value, data + at, sizeof(T));
  return value;
}

// Reads the byte list the pointer at `index` of the segment points to.
inline LayoutResult ByteList(const uint64_t* seg, uint64_t seg_words,
                             uint64_t index, bool text, std::string_view* out) {
  const uint64_t pointer = seg[index];
  if (pointer == 0) {
    *out = std::string_view();
    return LayoutResult::kOk;
  }
  const uint64_t kind = pointer & 3;
  if (kind == 2) return LayoutResult::kUnsupported;  // far pointer
  if (kind != 1 || ((pointer >> 32) & 7) != kByteElements) {
    return LayoutResult::kMalformed;
  }
  const uint64_t count = pointer >> 35;
  const int64_t target =
      static_cast<int64_t>(index) + 1 + PointerOffset(pointer);
  if (target < 0 ||
      static_cast<uint64_t>(target) + (count + 7) / 8 > seg_words) {
    return LayoutResult::kMalformed;
  }
  const char* bytes = reinterpret_cast<const char*>(seg + target);
  if (text) {
    if (count == 0 || bytes[count - 1] != '\0') return LayoutResult::kMalformed;
    *out = std::string_view(bytes, count - 1);
  } else {
    *out = std::string_view(bytes, count);
  }
  return LayoutResult::kOk;
}

}  // namespace record_layout_internal

// `record` must be 8-byte aligned and a whole number of words. Inline: the
// consumer calls it once per message.
inline LayoutResult ReadHotFields(std::string_view record, HotFields* out) {
  using namespace record_layout_internal;
  const uint64_t* words = reinterpret_cast<const uint64_t*>(record.data());
  const uint64_t total = record.size() / 8;
  if (total < 2) return LayoutResult::kMalformed;
  if ((words[0] & 0xffffffff) != 0) return LayoutResult::kUnsupported;
  const uint64_t seg_words = words[0] >> 32;
  if (seg_words + 1 != total) return LayoutResult::kMalformed;
  const uint64_t* seg = words + 1;

  *out = HotFields();
  const uint64_t root = seg[0];
  if (root == 0) return LayoutResult::kOk;  // every field at its default
  if ((root & 3) == 2) return LayoutResult::kUnsupported;
  if ((root & 3) != 0) return LayoutResult::kMalformed;
  const uint64_t data_words = (root >> 32) & 0xffff;
  const uint64_t pointers = root >> 48;
  const int64_t start = 1 + PointerOffset(root);
  if (start < 0 ||
      static_cast<uint64_t>(start) + data_words + pointers > seg_words) {
    return LayoutResult::kMalformed;
  }
  const char* data = reinterpret_cast<const char*>(seg + start);
  const uint64_t data_bytes = data_words * 8;
  out->queue = Field<uint32_t>(data, data_bytes, kQueueByte);
  out->offset = Field<uint64_t>(data, data_bytes, kOffsetByte);
  out->born_ms = Field<int64_t>(data, data_bytes, kBornByte);
  out->store_ms = Field<int64_t>(data, data_bytes, kStoreByte);

  const uint64_t first_pointer = start + data_words;
  struct Wanted {
    uint32_t index;
    bool text;
    std::string_view* into;
  };
  for (const Wanted& w : {Wanted{kIdPointer, false, &out->id},
                          Wanted{kKeyPointer, true, &out->key},
                          Wanted{kBodyPointer, false, &out->body}}) {
    if (w.index >= pointers) continue;  // an older, shorter record
    const LayoutResult r =
        ByteList(seg, seg_words, first_pointer + w.index, w.text, w.into);
    if (r != LayoutResult::kOk) return r;
  }
  return LayoutResult::kOk;
}

// Calls fn(tag) (a std::string_view into `record`) for each tag of the
// record, in order, until fn returns true. Same bounds checks as
// ReadHotFields; kUnsupported means "ask Cap'n Proto" (MessageView::tags).
template <typename Fn>
LayoutResult ForEachTag(std::string_view record, Fn&& fn) {
  using namespace record_layout_internal;
  const uint64_t* words = reinterpret_cast<const uint64_t*>(record.data());
  const uint64_t total = record.size() / 8;
  if (total < 2) return LayoutResult::kMalformed;
  if ((words[0] & 0xffffffff) != 0) return LayoutResult::kUnsupported;
  const uint64_t seg_words = words[0] >> 32;
  if (seg_words + 1 != total) return LayoutResult::kMalformed;
  const uint64_t* seg = words + 1;
  const uint64_t root = seg[0];
  if (root == 0) return LayoutResult::kOk;
  if ((root & 3) == 2) return LayoutResult::kUnsupported;
  if ((root & 3) != 0) return LayoutResult::kMalformed;
  const uint64_t data_words = (root >> 32) & 0xffff;
  const uint64_t pointers = root >> 48;
  const int64_t start = 1 + PointerOffset(root);
  if (start < 0 ||
      static_cast<uint64_t>(start) + data_words + pointers > seg_words) {
    return LayoutResult::kMalformed;
  }
  if (kTagsPointer >= pointers) return LayoutResult::kOk;
  const uint64_t index = start + data_words + kTagsPointer;
  const uint64_t list = seg[index];
  if (list == 0) return LayoutResult::kOk;  // no tags
  if ((list & 3) == 2) return LayoutResult::kUnsupported;
  if ((list & 3) != 1 || ((list >> 32) & 7) != kPointerElements) {
    return LayoutResult::kMalformed;
  }
  const uint64_t count = list >> 35;
  const int64_t target = static_cast<int64_t>(index) + 1 + PointerOffset(list);
  if (target < 0 || static_cast<uint64_t>(target) + count > seg_words) {
    return LayoutResult::kMalformed;
  }
  for (uint64_t i = 0; i < count; ++i) {
    std::string_view tag;
    const LayoutResult r = ByteList(seg, seg_words, target + i, true, &tag);
    if (r != LayoutResult::kOk) return r;
    if (fn(tag)) break;
  }
  return LayoutResult::kOk;
}

}  // namespace txmq

#endif  // TXMQ_LIB_LOG_RECORD_LAYOUT_H_
