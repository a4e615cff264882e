// TransactionId (include/txmq/transaction.h).

#include "absl/strings/str_format.h"
#include "storage/keys.h"
#include "txmq/transaction.h"
#include "util/hex.h"

namespace txmq {

TransactionId TransactionId::FromBytes(
    const std::array<uint8_t, kSize>& bytes) {
  TransactionId id;
  id.bytes_ = bytes;
  return id;
}

absl::StatusOr<TransactionId> TransactionId::Parse(std::string_view text) {
  std::array<uint8_t, kSize> bytes;
  if (!ParseHex(text, &bytes)) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "transaction id '%s' is not 32 hex digits", std::string(text)));
  }
  return FromBytes(bytes);
}

std::string TransactionId::ToString() const { return ToHex(bytes_); }

int64_t TransactionId::begin_time_ms() const {
  return static_cast<int64_t>(
      GetBigEndian(reinterpret_cast<const char*>(bytes_.data()), 6));
}

}  // namespace txmq
