// Reading a stored record with Cap'n Proto's reader, safely.
//
// Stored values need not be 8-byte aligned in general (the writer keeps
// queue records aligned, but half messages and delayed records are not),
// and a damaged record must be an error, not a crash: WithStoredRecord
// copies the bytes into words and turns Cap'n Proto's exceptions into
// DATA_LOSS.

#ifndef TXMQ_LIB_LOG_STORED_RECORD_H_
#define TXMQ_LIB_LOG_STORED_RECORD_H_

#include <capnp/serialize.h>
#include <kj/exception.h>

#include <cstring>
#include <string_view>
#include <type_traits>

#include "absl/status/statusor.h"
#include "absl/strings/str_format.h"
#include "record.capnp.h"

namespace txmq {

// Calls `f(schema::MessageRecord::Reader)` on a copy of `record` and
// returns its result (which must not point into the record). Errors:
// DATA_LOSS when the record does not decode.
template <typename F>
auto WithStoredRecord(std::string_view record, F&& f)
    -> absl::StatusOr<std::invoke_result_t<F, schema::MessageRecord::Reader>> {
  kj::Array<capnp::word> words =
      kj::heapArray<capnp::word>((record.size() + 7) / 8);
  std::memcpy(words.begin(), record.data(), record.size());
  try {
    capnp::FlatArrayMessageReader reader(words);
    return f(reader.getRoot<schema::MessageRecord>());
  } catch (const kj::Exception& e) {
    return absl::DataLossError(absl::StrFormat(
        "a stored message does not decode (%s); the data directory needs "
        "repair (run 'txmq verify')",
        e.getDescription().cStr()));
  }
}

}  // namespace txmq

#endif  // TXMQ_LIB_LOG_STORED_RECORD_H_
