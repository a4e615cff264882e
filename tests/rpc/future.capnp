# A client from the future: the txmq RPC interfaces (same type ids as
# lib/schema/rpc.capnp) with a method the server does not have, to test that
# an unknown method gets UNIMPLEMENTED, never a crash. The methods before it
# are declared with empty parameters: this client never calls them.

@0x869df6fe37abd0e7;

using Cxx = import "/capnp/c++.capnp";
$Cxx.namespace("txmq::rpc_future");

struct Status @0xa471e94affeb1e22 {
  code @0 :UInt32;
  message @1 :Text;
}

interface Gate @0xbb02d1e048ecdade {
  login @0 (token :Text) -> (status :Status, broker :Broker);
}

interface Broker @0xd5c87c78c51a8b74 {
  m0 @0 (); m1 @1 (); m2 @2 (); m3 @3 (); m4 @4 (); m5 @5 ();
  m6 @6 (); m7 @7 (); m8 @8 (); m9 @9 (); m10 @10 (); m11 @11 ();
  m12 @12 ();
  frobnicate @13 () -> (answer :Text);
}
