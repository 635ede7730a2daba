//! The plan executor: carries plans out step by step, durably (issue 6).
