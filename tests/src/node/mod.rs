//! The test node: what the kubelet does for pods, done for the end-to-end tests on this
//! machine (there is no container runtime here). So far: the pod network ([`net`]), and the
//! rules that turn a container spec into what runs ([`spec`]).

pub mod agent;
pub mod net;
pub mod spec;
