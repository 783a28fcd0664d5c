pub fn router() -> axum::Router<crate::web::AppState> {
    axum::Router::new()
}
