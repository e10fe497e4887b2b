//! Training: the paper's objectives and upstream's optimizer.
pub mod objectives;
pub mod optim;
pub mod pretrain;
