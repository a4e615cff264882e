#include "consume/offset_search.h"

#include <cstring>
#include <vector>

#include "absl/strings/str_format.h"
#include "log/record_layout.h"
#include "storage/keys.h"
#include "storage/lmdb_status.h"

namespace txmq {

absl::StatusOr<uint64_t> FirstStoredAtOrAfter(MDB_txn* txn, MDB_dbi dbi,
                                              uint64_t first, uint64_t end,
                                              int64_t time_ms) {
  uint64_t lo = first, hi = end;
  std::vector<uint64_t> words;
  while (lo < hi) {
    const uint64_t mid = lo + (hi - lo) / 2;
    const OffsetKey key(mid);
    MDB_val k{8, const_cast<char*>(key.bytes)}, v;
    if (int rc = mdb_get(txn, dbi, &k, &v); rc != MDB_SUCCESS) {
      return rc == MDB_NOTFOUND
                 ? absl::DataLossError(absl::StrFormat(
                       "message %d is missing from its queue; the data file "
                       "is damaged (run 'txmq verify')",
                       mid))
                 : LmdbStatus(rc, "cannot read a queue");
    }
    words.assign((v.mv_size + 7) / 8, 0);
    std::memcpy(words.data(), v.mv_data, v.mv_size);
    HotFields hot;
    if (v.mv_size % 8 != 0 ||
        ReadHotFields(
            std::string_view(reinterpret_cast<char*>(words.data()), v.mv_size),
            &hot) != LayoutResult::kOk) {
      return absl::DataLossError(absl::StrFormat(
          "message %d does not decode; the data file is damaged (run 'txmq "
          "verify')",
          mid));
    }
    if (hot.store_ms < time_ms) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  return lo;
}

}  // namespace txmq
