// The host tables of a broker (include/txmq/local_transaction.h): named
// LMDB tables "t.<name>" in the data directory, opened on demand.
//
// Thread-safe. Open blocks on the writer (the first open of a name creates
// the table in an exclusive transaction of its own: an LMDB handle opened
// in a transaction is usable by others once it commits).

#ifndef TXMQ_LIB_LOCAL_LOCAL_TABLES_H_
#define TXMQ_LIB_LOCAL_LOCAL_TABLES_H_

#include <lmdb.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "storage/env.h"
#include "txmq/local_transaction.h"
#include "write/writer.h"

namespace txmq::internal {

class LocalTables {
 public:
  // `writer` outlives the registry; at most `max` tables.
  LocalTables(Writer* writer, uint32_t max) : writer_(writer), max_(max) {}

  // Errors: INVALID_ARGUMENT (bad name), RESOURCE_EXHAUSTED (max tables
  // open), FAILED_PRECONDITION (on the writer thread), write errors.
  absl::StatusOr<LocalTable> Open(std::string_view name);

  // The LMDB handle of `table`. Errors: INVALID_ARGUMENT when it is not a
  // table this registry opened.
  absl::StatusOr<MDB_dbi> Handle(LocalTable table) const;

 private:
  Writer* const writer_;
  const uint32_t max_;
  absl::Mutex open_mu_;  // one open at a time (never taken by the writer)
  mutable absl::Mutex mu_ ABSL_ACQUIRED_AFTER(open_mu_);
  absl::flat_hash_map<std::string, MDB_dbi> by_name_ ABSL_GUARDED_BY(mu_);
  absl::flat_hash_set<MDB_dbi> handles_ ABSL_GUARDED_BY(mu_);
};

}  // namespace txmq::internal

#endif  // TXMQ_LIB_LOCAL_LOCAL_TABLES_H_
