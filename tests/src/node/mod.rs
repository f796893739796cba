//! The test node: what the kubelet does for pods, done for the end-to-end tests on this
//! machine (there is no container runtime here): the pod network ([`net`]), the rules that
//! turn a container spec into what runs ([`spec`]), probes ([`probe`]) and the loop that runs
//! the pods bound to the test Node ([`agent`]).

pub mod agent;
pub mod net;
pub mod probe;
pub mod spec;
