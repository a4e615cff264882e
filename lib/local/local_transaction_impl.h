// Host tables and local transactions (include/txmq/local_transaction.h).
//
// RunLocalTransaction submits one writer request. Its Apply opens an LMDB
// nested transaction inside the batch's write transaction and runs the
// host's callback there, so that a callback that fails (or throws) rolls
// back only its own writes; on success the nested transaction commits into
// the batch, and its queue appends and after-commit work join the batch's
// (WriteContext::Adopt). The caller waits for the batch's commit.
//
// Thread rules: the callback runs on the writer thread. Calls that wait
// for the writer fail there with FAILED_PRECONDITION
// (CheckNotOnWriterThread) instead of deadlocking.

#ifndef TXMQ_LIB_LOCAL_LOCAL_TRANSACTION_IMPL_H_
#define TXMQ_LIB_LOCAL_LOCAL_TRANSACTION_IMPL_H_

#include <lmdb.h>

#include <functional>

#include "absl/status/status.h"
#include "broker/core.h"
#include "txmq/local_transaction.h"

namespace txmq {

// Runs `fn` in a local transaction and waits for its commit (durable as
// Options::durability says). Returns fn's status when it failed (nothing
// of it was written), else the commit's.
absl::Status RunLocalTransaction(
    BrokerCore& core, const std::function<absl::Status(LocalTransaction&)>& fn);

// Runs `fn` on a read snapshot of the host tables.
absl::Status ReadLocalTables(
    const BrokerCore& core,
    const std::function<absl::Status(const LocalReader&)>& fn);

}  // namespace txmq

#endif  // TXMQ_LIB_LOCAL_LOCAL_TRANSACTION_IMPL_H_
