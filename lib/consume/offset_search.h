// Finding a queue offset by store time.

#ifndef TXMQ_LIB_CONSUME_OFFSET_SEARCH_H_
#define TXMQ_LIB_CONSUME_OFFSET_SEARCH_H_

#include <lmdb.h>

#include <cstdint>

#include "absl/status/statusor.h"

namespace txmq {

// The first offset in [first, end) of the queue table `dbi` whose message
// was stored at or after `time_ms`, or `end` if none: a binary search over
// store times, exact while they do not decrease along the queue (the
// broker's clock only moves forward). Errors: DATA_LOSS (a missing or
// damaged record), and LMDB errors.
absl::StatusOr<uint64_t> FirstStoredAtOrAfter(MDB_txn* txn, MDB_dbi dbi,
                                              uint64_t first, uint64_t end,
                                              int64_t time_ms);

}  // namespace txmq

#endif  // TXMQ_LIB_CONSUME_OFFSET_SEARCH_H_
