//! The supervised Temu actor: liveness and the periodic token check of the one [`TemuClient`].
//!
//! Owns: answering `Ping` from the mailbox, checking every shop's token on request
//! (`CheckTokens`, answered from its own task) and every `token_check_interval` (first check right
//! after start), and cancelling those tasks when it stops. The client is built once per process
//! and handed in, so a restart of this actor reuses it: never a second HTTP client or a second
//! limiter for an app_key. Callers call the client directly, not through this mailbox.
//! Must not: await an HTTP call inside `handle`, or build a client.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio_util::sync::CancellationToken;

use super::client::TemuClient;
use super::token::TokenReport;

/// Spawn arguments (kept by the supervisor for re-spawns: each re-spawn gets the same client).
#[derive(Debug, Clone)]
pub struct TemuActorArgs {
    pub client: TemuClient,
    /// How often every shop's token is checked (first check right after start; at least 1 s).
    pub token_check_interval: Duration,
}

pub enum TemuMsg {
    /// Liveness: answered from the mailbox at once.
    Ping(RpcReplyPort<()>),
    /// Check every shop's token now.
    CheckTokens(RpcReplyPort<Vec<TokenReport>>),
}

pub struct TemuActor;

pub struct TemuState {
    client: TemuClient,
    /// Stops this actor's tasks (the periodic check, pending `CheckTokens`).
    cancel: CancellationToken,
}

impl Drop for TemuState {
    /// Also when the actor dies without `post_stop` (a panic), its tasks stop with it, so a
    /// re-spawn never runs two periodic checks on the one client.
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

impl Actor for TemuActor {
    type Msg = TemuMsg;
    type State = TemuState;
    type Arguments = TemuActorArgs;

    async fn pre_start(
        &self,
        _myself: ActorRef<Self::Msg>,
        args: TemuActorArgs,
    ) -> Result<Self::State, ActorProcessingErr> {
        let cancel = CancellationToken::new();
        let interval = args.token_check_interval.max(Duration::from_secs(1));
        let checker = args.client.clone();
        let stop = cancel.clone();
        tokio::spawn(async move {
            // `biased`: a stop wins over a due check, so none starts after the actor stopped.
            loop {
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    _ = checker.check_tokens() => {}
                }
                tokio::select! {
                    biased;
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        });
        Ok(TemuState {
            client: args.client,
            cancel,
        })
    }

    async fn post_stop(
        &self,
        _myself: ActorRef<Self::Msg>,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        state.cancel.cancel();
        Ok(())
    }

    async fn handle(
        &self,
        _myself: ActorRef<Self::Msg>,
        message: Self::Msg,
        state: &mut Self::State,
    ) -> Result<(), ActorProcessingErr> {
        match message {
            TemuMsg::Ping(reply) => {
                let _ = reply.send(());
            }
            TemuMsg::CheckTokens(reply) => {
                let client = state.client.clone();
                let cancel = state.cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        // Dropping the reply port tells the caller the actor went away.
                        _ = cancel.cancelled() => {}
                        reports = client.check_tokens() => { let _ = reply.send(reports); }
                    }
                });
            }
        }
        Ok(())
    }
}
