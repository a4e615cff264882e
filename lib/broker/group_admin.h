// Consumer-group listings: progress and lag (Broker::DescribeGroup,
// Broker::ListGroups).

#ifndef TXMQ_LIB_BROKER_GROUP_ADMIN_H_
#define TXMQ_LIB_BROKER_GROUP_ADMIN_H_

#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "broker/core.h"
#include "txmq/broker.h"

namespace txmq {

// Committed offsets come from the loaded group state when a consumer of
// the group exists in this process (it holds acknowledgements not yet
// written), else from the cursor table.
absl::StatusOr<GroupLag> DescribeGroupLag(const BrokerCore& core,
                                          std::string_view group,
                                          std::string_view topic);
absl::StatusOr<std::vector<GroupLag>> ListGroupLags(const BrokerCore& core);

}  // namespace txmq

#endif  // TXMQ_LIB_BROKER_GROUP_ADMIN_H_
