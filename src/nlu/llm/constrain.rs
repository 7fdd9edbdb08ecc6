//! Placeholder: constrain (being written).
