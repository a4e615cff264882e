// A client calling a method the server does not know gets UNIMPLEMENTED,
// and the server goes on serving.

#include <capnp/ez-rpc.h>

#include "broker_fixture.h"
#include "future.capnp.h"
#include "gtest/gtest.h"
#include "test_util.h"
#include "txmq/remote_broker.h"
#include "txmq/rpc_server.h"

namespace txmq::testing {
namespace {

class RpcFutureTest : public BrokerFixture {};

TEST_F(RpcFutureTest, AnUnknownMethodIsUnimplemented) {
  auto server =
      RpcServer::Start(*broker_, {.listen = "unix:" + tmp_.Sub("mq.sock")});
  TXMQ_ASSERT_OK(server);
  {
    capnp::EzRpcClient client(kj::str("unix:", tmp_.Sub("mq.sock")));
    auto gate = client.getMain<rpc_future::Gate>();
    auto login = gate.loginRequest().send().wait(client.getWaitScope());
    ASSERT_EQ(login.getStatus().getCode(), 0u);
    auto call = login.getBroker().frobnicateRequest().send();
    kj::Maybe<kj::Exception> failure =
        kj::runCatchingExceptions([&] { call.wait(client.getWaitScope()); });
    KJ_IF_MAYBE (e, failure) {
      EXPECT_EQ(e->getType(), kj::Exception::Type::UNIMPLEMENTED)
          << e->getDescription().cStr();
    } else {
      ADD_FAILURE() << "an unknown method succeeded";
    }
  }
  // Still serving.
  auto remote = RemoteBroker::Connect((*server)->address());
  TXMQ_ASSERT_OK(remote);
  TXMQ_EXPECT_OK((*remote)->ListTopics());
}

}  // namespace
}  // namespace txmq::testing
