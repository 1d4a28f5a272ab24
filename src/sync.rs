//! Locks, condition variables and threads for the engine's own coordination,
//! switchable to shuttle's instrumented ones (`--cfg annals_shuttle`) so that a
//! model checker can explore the real group-commit hand-off
//! (`tests/group_commit_shuttle.rs`). The API is parking_lot's shape.

#[cfg(not(annals_shuttle))]
pub(crate) use parking_lot::{Condvar, Mutex, MutexGuard, RwLock, RwLockReadGuard};
#[cfg(not(annals_shuttle))]
pub(crate) use std::thread;

#[cfg(annals_shuttle)]
pub(crate) use model::{Condvar, Mutex, MutexGuard, RwLock};
#[cfg(annals_shuttle)]
pub(crate) use shuttle::sync::RwLockReadGuard;
#[cfg(annals_shuttle)]
pub(crate) use shuttle::thread;

#[cfg(annals_shuttle)]
mod model {
    use std::ops::{Deref, DerefMut};
    use std::time::Instant;

    /// A mutex whose guard can be handed to [`Condvar::wait`] by reference.
    #[derive(Debug, Default)]
    pub(crate) struct Mutex<T>(shuttle::sync::Mutex<T>);

    pub(crate) struct MutexGuard<'a, T>(Option<shuttle::sync::MutexGuard<'a, T>>);

    impl<T> Mutex<T> {
        pub(crate) fn new(value: T) -> Mutex<T> {
            Mutex(shuttle::sync::Mutex::new(value))
        }

        pub(crate) fn lock(&self) -> MutexGuard<'_, T> {
            MutexGuard(Some(self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner())))
        }

        pub(crate) fn get_mut(&mut self) -> &mut T {
            self.0.get_mut().unwrap_or_else(|poisoned| poisoned.into_inner())
        }

        pub(crate) fn try_lock(&self) -> Option<MutexGuard<'_, T>> {
            match self.0.try_lock() {
                Ok(guard) => Some(MutexGuard(Some(guard))),
                Err(std::sync::TryLockError::Poisoned(poisoned)) => Some(MutexGuard(Some(poisoned.into_inner()))),
                Err(std::sync::TryLockError::WouldBlock) => None,
            }
        }

        /// [`try_lock`](Mutex::try_lock), then a yield to the model's
        /// scheduler in place of the timeout (the model has no clock).
        pub(crate) fn try_lock_for(&self, _timeout: std::time::Duration) -> Option<MutexGuard<'_, T>> {
            let guard = self.try_lock();
            if guard.is_none() {
                shuttle::thread::yield_now();
            }
            guard
        }
    }

    impl<T> Deref for MutexGuard<'_, T> {
        type Target = T;
        fn deref(&self) -> &T {
            self.0.as_ref().expect("guard held")
        }
    }

    impl<T> DerefMut for MutexGuard<'_, T> {
        fn deref_mut(&mut self) -> &mut T {
            self.0.as_mut().expect("guard held")
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct Condvar(shuttle::sync::Condvar);

    pub(crate) struct WaitTimeoutResult(bool);

    impl WaitTimeoutResult {
        pub(crate) fn timed_out(&self) -> bool {
            self.0
        }
    }

    impl Condvar {
        pub(crate) fn new() -> Condvar {
            Condvar(shuttle::sync::Condvar::new())
        }

        pub(crate) fn wait<T>(&self, guard: &mut MutexGuard<'_, T>) {
            let inner = guard.0.take().expect("guard held");
            guard.0 = Some(self.0.wait(inner).unwrap_or_else(|poisoned| poisoned.into_inner()));
        }

        pub(crate) fn wait_until<T>(&self, guard: &mut MutexGuard<'_, T>, deadline: Instant) -> WaitTimeoutResult {
            let inner = guard.0.take().expect("guard held");
            let timeout = deadline.saturating_duration_since(Instant::now());
            let (inner, result) = self.0.wait_timeout(inner, timeout).unwrap_or_else(|poisoned| poisoned.into_inner());
            guard.0 = Some(inner);
            WaitTimeoutResult(result.timed_out())
        }

        pub(crate) fn notify_one(&self) {
            self.0.notify_one();
        }

        pub(crate) fn notify_all(&self) {
            self.0.notify_all();
        }
    }

    #[derive(Debug, Default)]
    pub(crate) struct RwLock<T>(shuttle::sync::RwLock<T>);

    impl<T> RwLock<T> {
        pub(crate) fn new(value: T) -> RwLock<T> {
            RwLock(shuttle::sync::RwLock::new(value))
        }

        pub(crate) fn read(&self) -> shuttle::sync::RwLockReadGuard<'_, T> {
            self.0.read().unwrap_or_else(|poisoned| poisoned.into_inner())
        }

        pub(crate) fn write(&self) -> shuttle::sync::RwLockWriteGuard<'_, T> {
            self.0.write().unwrap_or_else(|poisoned| poisoned.into_inner())
        }
    }
}
