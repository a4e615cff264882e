# The wire contract of txmq's RPC front (docs/rpc.md): a broker served to
# other processes over Cap'n Proto RPC (two-party, over a Unix socket or
# TCP).
#
# Evolution: methods and fields are only added, with new ordinals; a client
# calling a method the server lacks gets UNIMPLEMENTED.
#
# Errors: a call that reaches the broker answers with `status` (an
# absl::StatusCode and its message); the client library turns it back into
# the same absl::Status. A Cap'n Proto exception means the call did not get
# an answer (the connection broke, the server is shutting down): the client
# reports UNAVAILABLE.

@0xed6e8aff9afa9be6;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("txmq::rpc");

struct Status {
  code @0 :UInt32;     # absl::StatusCode; 0 = OK
  message @1 :Text;
}

struct Property {
  name @0 :Text;
  value @1 :Text;
}

struct Message {
  topic @0 :Text;
  key @1 :Text;
  tags @2 :List(Text);
  properties @3 :List(Property);
  body @4 :Data;
  deliverAtMs @5 :Int64;   # Unix ms; 0: at once
}

struct SendResult {
  id @0 :Data;             # 16 bytes; empty while delayed
  queue @1 :UInt32;
  offset @2 :UInt64;       # 2^64-1 while delayed
  storeTimeMs @3 :Int64;
  deliverAtMs @4 :Int64;
}

struct SendOutcome {
  status @0 :Status;
  result @1 :SendResult;
}

struct QueueInfo {
  queue @0 :UInt32;
  firstOffset @1 :UInt64;
  endOffset @2 :UInt64;
}

struct TopicInfo {
  name @0 :Text;
  queueCount @1 :UInt32;
  createTimeMs @2 :Int64;
  retentionMs @3 :Int64;   # -1: forever
  queues @4 :List(QueueInfo);
}

struct CheckPolicy {
  transactionTimeoutMs @0 :Int64;
  maxChecks @1 :UInt32;
  firstIntervalMs @2 :Int64;
  maxIntervalMs @3 :Int64;
}

struct HalfMessage {
  transactionId @0 :Data;
  group @1 :Text;
  beginTimeMs @2 :Int64;
  checks @3 :UInt32;
  record @4 :Data;     # the half message's stored record (record.capnp)
}

# Implemented by a client: the broker asks it about a transaction whose
# outcome it does not know (TransactionChecker::Check).
interface TransactionChecker {
  check @0 (half :HalfMessage) -> (state :UInt8);  # 0 unknown, 1 commit,
                                                   # 2 rollback
}

struct RetryPolicy {
  maxReconsumeTimes @0 :UInt32;
  backoffMs @1 :List(Int64);   # as RetryPolicy::backoff
}

struct ConsumerOptions {
  startFrom @0 :UInt8;          # 0 earliest, 1 latest
  tagFilter @1 :Text;
  invisibleDurationMs @2 :Int64;
  retry @3 :RetryPolicy;
  ordered @4 :Bool;
  broadcasting @5 :Bool;
  instance @6 :Text;
  maxInFlight @7 :UInt32;       # received and not yet settled, at most
}

struct Delivery {
  handle @0 :UInt64;            # names the message in ack and the like
  record @1 :Data;              # the stored record (lib/schema/record.capnp)
  reconsumeTimes @2 :UInt32;
  copyOffset @3 :UInt64;        # a copy from the group's retry queue: where
                                # it was read there; else 2^64-1
}

# A consumer of one topic in one group, held by a client. Pull-based flow
# control: receive returns at most `maxInFlight` messages not yet acked,
# reconsumed or timed out (invisible duration), so a slow consumer makes
# the server hold no more than that.
interface Subscription {
  receive @0 (max :UInt32, waitMs :Int64)
      -> (status :Status, deliveries :List(Delivery));
  ack @1 (handles :List(UInt64)) -> (status :Status);
  ackOffset @2 (queue :UInt32, offset :UInt64) -> (status :Status);
  reconsumeLater @3 (handle :UInt64, delayMs :Int64) -> (status :Status);
                                               # delayMs -1: the policy's
  changeInvisibleDuration @4 (handle :UInt64, durationMs :Int64)
      -> (status :Status);
  flush @5 () -> (status :Status);
  committedOffset @6 (queue :UInt32) -> (status :Status, offset :UInt64);
}

# The first capability a connection gets. Over TCP the server requires the
# shared token (a Unix socket is guarded by its file permissions: `token`
# may then be empty).
interface Gate {
  login @0 (token :Text) -> (status :Status, broker :Broker);
}

interface Broker {
  createTopic @0 (name :Text, queues :UInt32, retentionMs :Int64)
      -> (status :Status);       # retentionMs: -1 forever, 0 the default
  deleteTopic @1 (name :Text) -> (status :Status);
  listTopics @2 () -> (topics :List(TopicInfo));
  describeTopic @3 (name :Text) -> (status :Status, topic :TopicInfo);

  # Sends are durable before they answer, as Producer::Send.
  # `group`: the producer group (only Begin needs one); `selector` as
  # ProducerOptions::selector (0 auto, 1 key hash, 2 round robin).
  send @4 (message :Message, selector :UInt8) -> (status :Status,
                                                  result :SendResult);
  sendBatch @5 (messages :List(Message), selector :UInt8)
      -> (status :Status, results :List(SendResult));

  # Transactional messages: Begin stores a half message (durable before it
  # answers); Commit and Rollback resolve it by id, as
  # Broker::CommitTransaction / RollbackTransaction. A client that
  # disconnects leaves its half messages to the check-back.
  begin @6 (group :Text, message :Message, selector :UInt8,
            firstCheckMs :Int64)
      -> (status :Status, transactionId :Data);
  commit @7 (transactionId :Data) -> (status :Status, result :SendResult);
  rollback @8 (transactionId :Data) -> (status :Status);

  # The checker of a producer group lives in the client: the broker calls
  # it back for check-backs until this connection closes (then the group
  # has no checker until one registers again) or another registers.
  registerChecker @9 (group :Text, checker :TransactionChecker,
                      policy :CheckPolicy) -> (status :Status);
  unregisterChecker @10 (group :Text) -> (status :Status);

  subscribe @11 (group :Text, topic :Text, options :ConsumerOptions)
      -> (status :Status, subscription :Subscription);

  # Sends each message on its own (unlike sendBatch, not atomically): one
  # outcome per message, in order. The client library carries the sends
  # of many threads in one such call (at most 10,000 messages).
  sendEach @12 (messages :List(Message), selector :UInt8)
      -> (outcomes :List(SendOutcome));
}
