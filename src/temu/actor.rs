//! The supervised Temu actor: owns one [`TemuClient`] and serves calls without blocking its mailbox.
//!
//! Owns: building the client in `pre_start` (so a restart rebuilds the HTTP client and limiters),
//! answering `Ping`, and running each call in its own tokio task that replies through the
//! `RpcReplyPort` — the mailbox only dispatches, so it is never the bottleneck and a slow Temu
//! never delays a ping. A periodic token check publishes token health. Tasks are cancelled when the
//! actor stops. Must not: await an HTTP call inside `handle`.

use std::time::Duration;

use ractor::{Actor, ActorProcessingErr, ActorRef, RpcReplyPort};
use tokio_util::sync::CancellationToken;

use crate::config::{AppConfig, ShopConfig, TemuConfig};
use crate::health::Health;
use crate::metrics::Metrics;

use super::client::{ClientTuning, TemuClient};
use super::envelope::{ApiResponse, TemuError};
use super::model::*;
use super::token::TokenReport;

/// Spawn arguments (kept by the supervisor for re-spawns).
#[derive(Clone)]
pub struct TemuActorArgs {
    pub config: TemuConfig,
    pub apps: Vec<AppConfig>,
    pub shops: Vec<ShopConfig>,
    pub health: Health,
    pub tuning: ClientTuning,
    /// How often every shop's token is checked (first check right after start).
    pub token_check_interval: Duration,
    /// Where the client records API metrics (none: not recorded).
    pub metrics: Option<Metrics>,
}

impl TemuActorArgs {
    pub fn new(
        config: TemuConfig,
        apps: Vec<AppConfig>,
        shops: Vec<ShopConfig>,
        health: Health,
    ) -> Self {
        Self {
            tuning: ClientTuning::from_config(&config),
            token_check_interval: config.token_check_interval,
            config,
            apps,
            shops,
            health,
            metrics: None,
        }
    }
}

impl std::fmt::Debug for TemuActorArgs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TemuActorArgs")
            .field(
                "shops",
                &self.shops.iter().map(|s| &s.name).collect::<Vec<_>>(),
            )
            .finish_non_exhaustive()
    }
}

/// A call the actor can run.
#[derive(Debug, Clone)]
pub enum TemuRequest {
    Orders(OrderListRequest),
    OrderDetail(OrderDetailRequest),
    Goods(GoodsListRequest),
    AfterSales(AfterSalesListRequest),
    TokenInfo,
}

/// Its answer.
#[derive(Debug)]
pub enum TemuResponse {
    Orders(ApiResponse<OrderListResult>),
    OrderDetail(ApiResponse<OrderDetail>),
    Goods(ApiResponse<GoodsListResult>),
    AfterSales(ApiResponse<AfterSalesListResult>),
    TokenInfo(ApiResponse<TokenInfo>),
}

pub enum TemuMsg {
    /// Liveness: answered from the mailbox at once.
    Ping(RpcReplyPort<()>),
    /// One API call for `shop`, bounded by `deadline`.
    Call {
        shop: String,
        request: TemuRequest,
        deadline: Duration,
        reply: RpcReplyPort<Result<TemuResponse, TemuError>>,
    },
    /// Check every shop's token now.
    CheckTokens(RpcReplyPort<Vec<TokenReport>>),
    /// A clone of the client, for callers that want to call it directly.
    Client(RpcReplyPort<TemuClient>),
}

pub struct TemuActor;

pub struct TemuState {
    client: TemuClient,
    cancel: CancellationToken,
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
        let client = TemuClient::with_tuning(
            &args.config,
            &args.apps,
            &args.shops,
            args.tuning.clone(),
            Some(args.health.clone()),
        )?;
        if let Some(metrics) = &args.metrics {
            client.set_metrics(metrics.clone());
        }
        let cancel = CancellationToken::new();
        let interval = args.token_check_interval.max(Duration::from_secs(1));
        let checker = client.clone();
        let stop = cancel.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = checker.check_tokens() => {}
                }
                tokio::select! {
                    _ = stop.cancelled() => return,
                    _ = tokio::time::sleep(interval) => {}
                }
            }
        });
        Ok(TemuState { client, cancel })
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
            TemuMsg::Client(reply) => {
                let _ = reply.send(state.client.clone());
            }
            TemuMsg::CheckTokens(reply) => {
                let client = state.client.clone();
                let cancel = state.cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        _ = cancel.cancelled() => {}
                        reports = client.check_tokens() => { let _ = reply.send(reports); }
                    }
                });
            }
            TemuMsg::Call {
                shop,
                request,
                deadline,
                reply,
            } => {
                let client = state.client.clone();
                let cancel = state.cancel.clone();
                tokio::spawn(async move {
                    tokio::select! {
                        // Dropping the reply port tells the caller the actor went away.
                        _ = cancel.cancelled() => {}
                        res = run(&client, &shop, request, deadline) => {
                            let _ = reply.send(res);
                        }
                    }
                });
            }
        }
        Ok(())
    }
}

async fn run(
    client: &TemuClient,
    shop: &str,
    request: TemuRequest,
    deadline: Duration,
) -> Result<TemuResponse, TemuError> {
    let d = Some(deadline);
    Ok(match request {
        TemuRequest::Orders(r) => {
            TemuResponse::Orders(client.call(shop, API_ORDER_LIST, &r, d).await?)
        }
        TemuRequest::OrderDetail(r) => {
            TemuResponse::OrderDetail(client.call(shop, API_ORDER_DETAIL, &r, d).await?)
        }
        TemuRequest::Goods(r) => {
            TemuResponse::Goods(client.call(shop, API_GOODS_LIST, &r, d).await?)
        }
        TemuRequest::AfterSales(r) => {
            TemuResponse::AfterSales(client.call(shop, API_AFTERSALES_LIST, &r, d).await?)
        }
        TemuRequest::TokenInfo => TemuResponse::TokenInfo(client.token_info(shop).await?),
    })
}

/// Typed calls through the actor, each with a deadline.
#[derive(Clone)]
pub struct TemuHandle {
    actor: ActorRef<TemuMsg>,
    deadline: Duration,
}

/// Extra time the caller waits beyond the call's own deadline, for the reply to travel.
const REPLY_MARGIN: Duration = Duration::from_millis(500);

impl TemuHandle {
    /// `deadline` bounds each call (the client's `call_deadline` still applies when shorter).
    pub fn new(actor: ActorRef<TemuMsg>, deadline: Duration) -> Self {
        Self { actor, deadline }
    }

    pub fn actor(&self) -> &ActorRef<TemuMsg> {
        &self.actor
    }

    pub async fn request(
        &self,
        shop: &str,
        request: TemuRequest,
    ) -> Result<TemuResponse, TemuError> {
        let deadline = self.deadline;
        let res = self
            .actor
            .call(
                |reply| TemuMsg::Call {
                    shop: shop.to_string(),
                    request,
                    deadline,
                    reply,
                },
                Some(deadline + REPLY_MARGIN),
            )
            .await;
        match res {
            Ok(ractor::rpc::CallResult::Success(r)) => r,
            Ok(ractor::rpc::CallResult::Timeout) => Err(TemuError::Deadline {
                api: "actor call".into(),
                deadline,
                attempts: 0,
                last: None,
            }),
            Ok(ractor::rpc::CallResult::SenderError) => Err(TemuError::Unavailable(
                "the Temu actor stopped before answering".into(),
            )),
            Err(e) => Err(TemuError::Unavailable(format!(
                "cannot reach the Temu actor: {}",
                match e {
                    ractor::MessagingErr::SendErr(_) => "mailbox closed",
                    ractor::MessagingErr::ChannelClosed => "channel closed",
                    ractor::MessagingErr::InvalidActorType => "wrong actor type",
                }
            ))),
        }
    }

    pub async fn list_orders(
        &self,
        shop: &str,
        req: OrderListRequest,
    ) -> Result<ApiResponse<OrderListResult>, TemuError> {
        match self.request(shop, TemuRequest::Orders(req)).await? {
            TemuResponse::Orders(r) => Ok(r),
            _ => Err(mismatch()),
        }
    }

    pub async fn order_detail(
        &self,
        shop: &str,
        req: OrderDetailRequest,
    ) -> Result<ApiResponse<OrderDetail>, TemuError> {
        match self.request(shop, TemuRequest::OrderDetail(req)).await? {
            TemuResponse::OrderDetail(r) => Ok(r),
            _ => Err(mismatch()),
        }
    }

    pub async fn list_goods(
        &self,
        shop: &str,
        req: GoodsListRequest,
    ) -> Result<ApiResponse<GoodsListResult>, TemuError> {
        match self.request(shop, TemuRequest::Goods(req)).await? {
            TemuResponse::Goods(r) => Ok(r),
            _ => Err(mismatch()),
        }
    }

    pub async fn list_aftersales(
        &self,
        shop: &str,
        req: AfterSalesListRequest,
    ) -> Result<ApiResponse<AfterSalesListResult>, TemuError> {
        match self.request(shop, TemuRequest::AfterSales(req)).await? {
            TemuResponse::AfterSales(r) => Ok(r),
            _ => Err(mismatch()),
        }
    }

    pub async fn token_info(&self, shop: &str) -> Result<ApiResponse<TokenInfo>, TemuError> {
        match self.request(shop, TemuRequest::TokenInfo).await? {
            TemuResponse::TokenInfo(r) => Ok(r),
            _ => Err(mismatch()),
        }
    }

    /// Liveness ping with a deadline.
    pub async fn ping(&self, timeout: Duration) -> bool {
        matches!(
            self.actor.call(TemuMsg::Ping, Some(timeout)).await,
            Ok(ractor::rpc::CallResult::Success(()))
        )
    }

    /// A clone of the actor's client (to call it directly, e.g. from a sync run).
    pub async fn client(&self, timeout: Duration) -> Result<TemuClient, TemuError> {
        match self.actor.call(TemuMsg::Client, Some(timeout)).await {
            Ok(ractor::rpc::CallResult::Success(c)) => Ok(c),
            _ => Err(TemuError::Unavailable(
                "the Temu actor did not answer".into(),
            )),
        }
    }
}

fn mismatch() -> TemuError {
    TemuError::Unavailable("the Temu actor answered a different call".into())
}
