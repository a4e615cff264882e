// Encoding messages into the stored record (lib/schema/record.capnp).
//
// A producer thread encodes its message into a PendingRecord (all the
// copying and validation happens there, off the writer's thread); the writer
// then stamps the fields only it knows (id, queue, offset, store time) and
// serializes the record straight into the space LMDB reserved for it.
//
// Stored records are flat Cap'n Proto messages (segment table + segments),
// always a whole number of 8-byte words. docs/format.md explains why that,
// plus the 8-byte offset keys, leaves every record 8-byte aligned in the map,
// which is what lets consumers read them in place.

#ifndef TXMQ_LIB_LOG_RECORD_CODEC_H_
#define TXMQ_LIB_LOG_RECORD_CODEC_H_

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "txmq/message.h"

namespace capnp {
class MallocMessageBuilder;
}

namespace txmq {

// Message limits (also documented in include/txmq/message.h).
inline constexpr size_t kMaxKeyBytes = 1024;
inline constexpr size_t kMaxTags = 32;
inline constexpr size_t kMaxTagBytes = 128;
inline constexpr size_t kMaxProperties = 256;
inline constexpr size_t kMaxPropertyNameBytes = 128;
inline constexpr size_t kMaxPropertyValueBytes = 32 * 1024;
inline constexpr absl::Duration kMaxDelay = absl::Hours(24 * 366);

// Not thread-safe; owned by one request at a time. Movable.
class PendingRecord {
 public:
  // Validates `message` against the limits above and `max_record_bytes`, and
  // encodes it. Errors: INVALID_ARGUMENT naming the limit that was broken.
  static absl::StatusOr<PendingRecord> Encode(const Message& message,
                                              int64_t born_time_ms,
                                              size_t max_record_bytes);

  // Rebuilds a pending record from a stored, unstamped record (a half
  // message), copying it; Stamp then assigns what a commit assigns.
  // Errors: DATA_LOSS when `record` does not decode.
  static absl::StatusOr<PendingRecord> FromStored(std::string_view record);

  // Copies a stored, stamped record for a consumer group's retry or dead
  // letter queue: the copy belongs to `topic`, carries `reconsume_times`
  // and `deliver_at_ms`, and keeps where the message was first stored (its
  // origin: copied from `record`'s origin if it has one, else from its own
  // topic, id, queue, offset and store time). Errors: DATA_LOSS when
  // `record` does not decode.
  static absl::StatusOr<PendingRecord> CopyFor(std::string_view record,
                                               std::string_view topic,
                                               uint32_t reconsume_times,
                                               int64_t deliver_at_ms);

  // The reconsumeTimes of a stored record (0 for an original message).
  // Errors: DATA_LOSS when `record` does not decode.
  static absl::StatusOr<uint32_t> ReconsumeTimesOf(std::string_view record);

  PendingRecord(PendingRecord&&) noexcept;
  PendingRecord& operator=(PendingRecord&&) noexcept;
  ~PendingRecord();

  // Thread: writer only. Stamps what the broker assigns.
  void Stamp(const MessageId& id, uint32_t queue, uint64_t offset,
             int64_t store_time_ms);
  // When the message should become visible (Unix ms; 0: at once).
  int64_t deliver_at_ms() const;
  // The message key (valid while this record lives and is not changed).
  std::string_view key() const;
  // The serialized size in bytes (a multiple of 8). Stable after Encode.
  size_t size() const { return size_; }
  // Serializes into `out`, which has room for size() bytes.
  void WriteTo(void* out) const;
  std::string Serialize() const;

 private:
  PendingRecord();
  std::unique_ptr<capnp::MallocMessageBuilder> builder_;
  size_t size_ = 0;
};

}  // namespace txmq

#endif  // TXMQ_LIB_LOG_RECORD_CODEC_H_
