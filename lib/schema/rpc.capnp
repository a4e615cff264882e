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
}
