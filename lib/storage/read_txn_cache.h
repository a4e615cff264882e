// ReadTxnCache: keeps one reset read-only transaction for reuse.
//
// Beginning a read transaction takes LMDB's reader-table mutex (shared with
// other processes) to find a free slot; renewing a reset one reuses its
// slot without that mutex. A consumer keeps one cache and each batch hands
// its transaction back when it dies.
//
// Thread-safe (one atomic exchange). The environment outlives the cache.

#ifndef TXMQ_LIB_STORAGE_READ_TXN_CACHE_H_
#define TXMQ_LIB_STORAGE_READ_TXN_CACHE_H_

#include <lmdb.h>

#include <atomic>

namespace txmq {

class ReadTxnCache {
 public:
  explicit ReadTxnCache(MDB_env* env) : env_(env) {}
  ~ReadTxnCache() {
    if (MDB_txn* txn = spare_.exchange(nullptr)) mdb_txn_abort(txn);
  }
  ReadTxnCache(const ReadTxnCache&) = delete;
  ReadTxnCache& operator=(const ReadTxnCache&) = delete;

  // A live read-only transaction on the newest snapshot. Returns an MDB_*
  // code (MDB_READERS_FULL when every reader slot is taken).
  int Acquire(MDB_txn** txn) {
    if (MDB_txn* spare = spare_.exchange(nullptr, std::memory_order_acquire)) {
      if (mdb_txn_renew(spare) == MDB_SUCCESS) {
        *txn = spare;
        return MDB_SUCCESS;
      }
      mdb_txn_abort(spare);
    }
    return mdb_txn_begin(env_, nullptr, MDB_RDONLY, txn);
  }

  // Ends `txn` and keeps it for the next Acquire if the slot is free.
  void Release(MDB_txn* txn) {
    mdb_txn_reset(txn);
    MDB_txn* expected = nullptr;
    if (!spare_.compare_exchange_strong(expected, txn,
                                        std::memory_order_release)) {
      mdb_txn_abort(txn);
    }
  }

 private:
  MDB_env* const env_;
  std::atomic<MDB_txn*> spare_{nullptr};
};

}  // namespace txmq

#endif  // TXMQ_LIB_STORAGE_READ_TXN_CACHE_H_
