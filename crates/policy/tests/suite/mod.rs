mod cache;
mod cases;
mod errors;
mod limits;
mod opa_compat;
mod threads;
