// The whole public API of txmq in one include.

#ifndef TXMQ_TXMQ_H_
#define TXMQ_TXMQ_H_

#include "txmq/broker.h"             // IWYU pragma: export
#include "txmq/clock.h"              // IWYU pragma: export
#include "txmq/consumer.h"           // IWYU pragma: export
#include "txmq/inspector.h"          // IWYU pragma: export
#include "txmq/local_transaction.h"  // IWYU pragma: export
#include "txmq/message.h"            // IWYU pragma: export
#include "txmq/producer.h"           // IWYU pragma: export
#include "txmq/push_consumer.h"      // IWYU pragma: export
#include "txmq/transaction.h"        // IWYU pragma: export

#endif  // TXMQ_TXMQ_H_
