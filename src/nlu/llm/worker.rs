//! Placeholder: worker (being written).
