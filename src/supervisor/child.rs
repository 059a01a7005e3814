//! How the supervisor (re)starts and pings one child: [`ChildSpec`].

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;
use ractor::rpc::CallResult;
use ractor::{Actor, ActorCell, RpcReplyPort, SpawnErr};

/// Answers whether the child replied to a ping within the deadline.
pub type PingFn = Arc<dyn Fn(Duration) -> BoxFuture<'static, bool> + Send + Sync>;

/// A started child: its cell (for supervision events and stopping) and how to ping it.
pub struct RunningChild {
    pub cell: ActorCell,
    pub ping: PingFn,
}

/// Everything the supervisor needs to start a child again after it failed.
///
/// ractor's `Arguments` are consumed by a spawn, so a spec keeps a factory that makes fresh ones.
/// A child's `pre_start` must be quick and must not wait on the outside world: the supervisor
/// bounds it, and slow setup belongs in messages the child sends itself.
pub trait ChildSpec: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn spawn(&self, supervisor: ActorCell) -> BoxFuture<'static, Result<RunningChild, SpawnErr>>;
}

/// A [`ChildSpec`] for any ractor actor whose message type has a ping variant.
pub struct ActorChild<A: Actor> {
    name: String,
    make: Box<dyn Fn() -> (A, A::Arguments) + Send + Sync>,
    ping: fn(RpcReplyPort<()>) -> A::Msg,
}

impl<A: Actor> ActorChild<A> {
    /// `make` builds the actor and its arguments for each start; `ping` wraps a reply port into
    /// the actor's ping message (e.g. `DbMsg::Ping`).
    pub fn new(
        name: impl Into<String>,
        make: impl Fn() -> (A, A::Arguments) + Send + Sync + 'static,
        ping: fn(RpcReplyPort<()>) -> A::Msg,
    ) -> Self {
        Self {
            name: name.into(),
            make: Box::new(make),
            ping,
        }
    }
}

impl<A: Actor> ChildSpec for ActorChild<A> {
    fn name(&self) -> &str {
        &self.name
    }

    fn spawn(&self, supervisor: ActorCell) -> BoxFuture<'static, Result<RunningChild, SpawnErr>> {
        let (actor, args) = (self.make)();
        let name = self.name.clone();
        let ping = self.ping;
        Box::pin(async move {
            let (actor_ref, _join) = A::spawn_linked(Some(name), actor, args, supervisor).await?;
            let cell = actor_ref.get_cell();
            let ping: PingFn = Arc::new(move |deadline| {
                let actor_ref = actor_ref.clone();
                Box::pin(async move {
                    matches!(
                        actor_ref.call(ping, Some(deadline)).await,
                        Ok(CallResult::Success(()))
                    )
                })
            });
            Ok(RunningChild { cell, ping })
        })
    }
}
