//! The test node: what the kubelet does for pods, done for the end-to-end tests on this
//! machine (there is no container runtime here): the pod network ([`net`]), the programs
//! images stand for ([`images`]), the rules that turn a container spec into what runs
//! ([`spec`]), volumes ([`volume`]), the launcher that mounts them and becomes the container
//! inside the pod's namespaces ([`launch`]), one container's life ([`container`]) with its
//! probes ([`probe`]), and the loop that runs the pods bound to the test Node ([`agent`]).

pub mod agent;
pub mod container;
pub mod images;
pub mod launch;
pub mod net;
pub mod probe;
pub mod spec;
pub mod test_node;
pub mod volume;
