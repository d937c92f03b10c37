//! The cluster: `GET /cluster`, the nodes sharing this daemon's stores.
//!
//! Read-only and cheap: one membership read per store. A node is `alive` when its
//! last heartbeat is within the node timeout by *this* node's clock.

use axum::extract::State;
use serde::Serialize;

use super::error::ApiError;
use super::{AppState, Routes, Verb};
use crate::scheduler::ClusterNode;

pub(super) fn routes(routes: Routes) -> Routes {
    routes.add(Verb::Get, "/cluster", show_cluster)
}

#[derive(Serialize)]
struct ClusterView {
    nodes: Vec<ClusterNode>,
}

async fn show_cluster(State(state): State<AppState>) -> Result<axum::Json<ClusterView>, ApiError> {
    let nodes = state.scheduler.cluster().await?;
    Ok(axum::Json(ClusterView { nodes }))
}
