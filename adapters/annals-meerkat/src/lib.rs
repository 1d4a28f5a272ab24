//! meerkat's `HostStore` extension point on Annals.
