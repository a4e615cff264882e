# The on-disk records of a txmq data directory (format version 1).
# docs/format.md describes where each record lives and the key layouts.
# Evolve these only by adding fields with new ordinals: old readers skip
# unknown fields, new readers see defaults in old records.

@0xf4463eea2c72abeb;

$import "/capnp/c++.capnp".namespace("txmq::schema");

struct Property {
  name @0 :Text;
  value @1 :Text;
}

# A committed message: the value of (queue table, offset).
struct MessageRecord {
  id @0 :Data;                # 16 bytes, see MessageId in include/txmq/message.h
  topic @1 :Text;
  queue @2 :UInt32;           # queue index within the topic
  offset @3 :UInt64;          # position in the queue
  key @4 :Text;
  tags @5 :List(Text);
  properties @6 :List(Property);
  bornTimeMs @7 :Int64;       # producer's clock, Unix milliseconds
  storeTimeMs @8 :Int64;      # broker's clock, Unix milliseconds
  body @9 :Data;
  # When the message becomes visible (Unix ms; 0: at once). Set on delayed
  # messages; kept on the record for transactions committed later.
  deliverAtMs @10 :Int64;
  # Set on the copies the broker makes for one consumer group: a retry (in
  # topic "%RETRY%<group>%<topic>") or a dead letter ("%DLQ%<group>").
  # reconsumeTimes: how many deliveries of the message failed before this
  # copy was made. origin: where the message was first stored.
  reconsumeTimes @11 :UInt32;
  origin @12 :Origin;
}

# The original position of a retried or dead-lettered message.
struct Origin {
  topic @0 :Text;
  id @1 :Data;                # 16 bytes, the original MessageId
  queue @2 :UInt32;
  offset @3 :UInt64;
  storeTimeMs @4 :Int64;
}

# A topic definition: the value of meta key "topic/<name>".
struct TopicRecord {
  name @0 :Text;
  queueCount @1 :UInt32;
  # Broker-wide number of queue 0; queue i is firstQueueNumber + i. Its
  # messages live in the LMDB table named "q.<number>" (decimal).
  firstQueueNumber @2 :UInt32;
  createTimeMs @3 :Int64;
  # How long the topic keeps a message after its store time, in ms:
  # > 0 that long; -1 forever; 0 (records written before retention
  # existed) the default, 72 hours.
  retentionMs @4 :Int64;
}
