//! Key-value stores as guests reach them, over `ferry-store`: Spin's
//! `fermyon:spin/key-value@2.0.0` (spin-sdk 2.x–5.x) and
//! `wasi:keyvalue/{store,atomics,batch}@0.2.0-draft2` (what Spin 3 and 4
//! provide). Both open the same stores: a value one writes, the other reads.
//!
//! The context is the component's granted stores, by label, opened once when
//! the app loads (`key_value_stores` in the manifest; the backend per label
//! from `runtime-config.toml`). Each store borrows them with its resource
//! table, where an opened store is a handle to the shared backend. A label
//! the component was not granted is `access-denied`, as in Spin: linking the
//! interface grants nothing.

use std::collections::BTreeMap;
use std::sync::Arc;

use ferry_store::KeyValue;
use wasmtime::component::{
    Accessor, FutureReader, HasData, Linker, Resource, ResourceTable, StreamReader,
};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/key-value",
        world: "ferry:key-value/key-value",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": super::OpenStore,
            "wasi:keyvalue/store.bucket": super::OpenStore,
            "wasi:keyvalue/atomics.cas": super::Cas,
            "spin:key-value/key-value.store": super::OpenStore,
        },
    });
}

use generated::fermyon::spin::key_value as v2;
use generated::spin::key_value::key_value as v3;
use generated::wasi::keyvalue::{atomics, batch, store as wasi_store};

/// A store a guest opened: the backend behind its label.
pub struct OpenStore(Arc<dyn KeyValue>);

/// A compare-and-swap in progress: the value `key` had when it began.
pub struct Cas {
    store: Arc<dyn KeyValue>,
    key: String,
    current: Option<Vec<u8>>,
}

/// Keys per `list-keys` page.
const KEYS_PER_PAGE: usize = 1000;

/// Granted stores, by label.
pub(crate) type Stores = BTreeMap<String, Arc<dyn KeyValue>>;

/// What one guest store gives the key-value interfaces.
pub(crate) struct KeyValueView<'a> {
    pub table: &'a mut ResourceTable,
    pub stores: &'a Stores,
    /// What the store holds of results its guest has not read yet.
    pub unread: &'a crate::Unread,
}

pub(crate) trait KeyValueHost {
    fn key_value(&mut self) -> KeyValueView<'_>;
}

struct KeyValueData;

impl HasData for KeyValueData {
    type Data<'a> = KeyValueView<'a>;
}

pub(crate) fn add_to_linker<T: KeyValueHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    v2::add_to_linker::<T, KeyValueData>(linker, T::key_value)?;
    wasi_store::add_to_linker::<T, KeyValueData>(linker, T::key_value)?;
    atomics::add_to_linker::<T, KeyValueData>(linker, T::key_value)?;
    batch::add_to_linker::<T, KeyValueData>(linker, T::key_value)?;
    Ok(())
}

/// Also `spin:key-value@3.0.0`, whose functions are async: only an engine
/// with the component model's concurrency can link it.
pub(crate) fn add_to_linker_concurrent<T: KeyValueHost + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    add_to_linker(linker)?;
    v3::add_to_linker::<T, KeyValueData>(linker, T::key_value)
}

/// A backend failure, as the interface's catch-all error.
fn other(error: ferry_store::Error) -> v2::Error {
    v2::Error::Other(error.to_string())
}

impl KeyValueView<'_> {
    fn store(&self, store: &Resource<OpenStore>) -> wasmtime::Result<Arc<dyn KeyValue>> {
        Ok(self.table.get(store)?.0.clone())
    }

    /// The store granted under `label`, opened as a guest resource.
    fn open(&mut self, label: &str) -> wasmtime::Result<Option<Resource<OpenStore>>> {
        match self.stores.get(label) {
            Some(store) => Ok(Some(self.table.push(OpenStore(store.clone()))?)),
            None => Ok(None),
        }
    }
}

/// A backend failure, as wasi:keyvalue's catch-all error.
fn wasi_other(error: ferry_store::Error) -> wasi_store::Error {
    wasi_store::Error::Other(error.to_string())
}

impl v2::Host for KeyValueView<'_> {}

impl v2::HostStore for KeyValueView<'_> {
    async fn open(
        &mut self,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, v2::Error>> {
        let Some(store) = self.stores.get(&label) else {
            return Ok(Err(v2::Error::AccessDenied));
        };
        Ok(Ok(self.table.push(OpenStore(store.clone()))?))
    }

    async fn get(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, v2::Error>> {
        Ok(self.store(&store)?.get(&key).await.map_err(other))
    }

    async fn set(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        Ok(self.store(&store)?.set(key, value).await.map_err(other))
    }

    async fn delete(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), v2::Error>> {
        Ok(self.store(&store)?.delete(key).await.map_err(other))
    }

    async fn exists(
        &mut self,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, v2::Error>> {
        Ok(self.store(&store)?.exists(&key).await.map_err(other))
    }

    async fn get_keys(
        &mut self,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<Result<Vec<String>, v2::Error>> {
        Ok(self.store(&store)?.keys().await.map_err(other))
    }

    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl wasi_store::Host for KeyValueView<'_> {
    async fn open(
        &mut self,
        identifier: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, wasi_store::Error>> {
        Ok(KeyValueView::open(self, &identifier)?.ok_or(wasi_store::Error::AccessDenied))
    }
}

impl wasi_store::HostBucket for KeyValueView<'_> {
    async fn get(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wasi_store::Error>> {
        Ok(self.store(&bucket)?.get(&key).await.map_err(wasi_other))
    }

    async fn set(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), wasi_store::Error>> {
        Ok(self
            .store(&bucket)?
            .set(key, value)
            .await
            .map_err(wasi_other))
    }

    async fn delete(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), wasi_store::Error>> {
        Ok(self.store(&bucket)?.delete(key).await.map_err(wasi_other))
    }

    async fn exists(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, wasi_store::Error>> {
        Ok(self.store(&bucket)?.exists(&key).await.map_err(wasi_other))
    }

    /// A page of keys; the cursor is the page's last key.
    async fn list_keys(
        &mut self,
        bucket: Resource<OpenStore>,
        cursor: Option<String>,
    ) -> wasmtime::Result<Result<wasi_store::KeyResponse, wasi_store::Error>> {
        let keys = match self.store(&bucket)?.keys_page(cursor, KEYS_PER_PAGE).await {
            Ok(keys) => keys,
            Err(e) => return Ok(Err(wasi_other(e))),
        };
        let cursor = (keys.len() == KEYS_PER_PAGE)
            .then(|| keys.last().cloned())
            .flatten();
        Ok(Ok(wasi_store::KeyResponse { keys, cursor }))
    }

    async fn drop(&mut self, bucket: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(bucket)?;
        Ok(())
    }
}

impl atomics::Host for KeyValueView<'_> {
    async fn increment(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
        delta: i64,
    ) -> wasmtime::Result<Result<i64, wasi_store::Error>> {
        Ok(self
            .store(&bucket)?
            .increment(key, delta)
            .await
            .map_err(wasi_other))
    }

    /// Sets the value if it is still what the cas saw; if not, the guest
    /// gets a new cas holding the value now there, to retry with.
    async fn swap(
        &mut self,
        cas: Resource<Cas>,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), atomics::CasError>> {
        let Cas {
            store,
            key,
            current,
        } = self.table.delete(cas)?;
        match store.compare_and_swap(key.clone(), current, value).await {
            Ok(true) => Ok(Ok(())),
            Ok(false) => {
                let current = match store.get(&key).await {
                    Ok(current) => current,
                    Err(e) => return Ok(Err(atomics::CasError::StoreError(wasi_other(e)))),
                };
                let retry = self.table.push(Cas {
                    store,
                    key,
                    current,
                })?;
                Ok(Err(atomics::CasError::CasFailed(retry)))
            }
            Err(e) => Ok(Err(atomics::CasError::StoreError(wasi_other(e)))),
        }
    }
}

impl atomics::HostCas for KeyValueView<'_> {
    async fn new(
        &mut self,
        bucket: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Resource<Cas>, wasi_store::Error>> {
        let store = self.store(&bucket)?;
        let current = match store.get(&key).await {
            Ok(current) => current,
            Err(e) => return Ok(Err(wasi_other(e))),
        };
        Ok(Ok(self.table.push(Cas {
            store,
            key,
            current,
        })?))
    }

    async fn current(
        &mut self,
        cas: Resource<Cas>,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, wasi_store::Error>> {
        Ok(Ok(self.table.get(&cas)?.current.clone()))
    }

    async fn drop(&mut self, cas: Resource<Cas>) -> wasmtime::Result<()> {
        self.table.delete(cas)?;
        Ok(())
    }
}

impl batch::Host for KeyValueView<'_> {
    async fn get_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<Vec<(String, Option<Vec<u8>>)>, wasi_store::Error>> {
        Ok(self
            .store(&bucket)?
            .get_many(keys)
            .await
            .map_err(wasi_other))
    }

    async fn set_many(
        &mut self,
        bucket: Resource<OpenStore>,
        key_values: Vec<(String, Vec<u8>)>,
    ) -> wasmtime::Result<Result<(), wasi_store::Error>> {
        Ok(self
            .store(&bucket)?
            .set_many(key_values)
            .await
            .map_err(wasi_other))
    }

    async fn delete_many(
        &mut self,
        bucket: Resource<OpenStore>,
        keys: Vec<String>,
    ) -> wasmtime::Result<Result<(), wasi_store::Error>> {
        Ok(self
            .store(&bucket)?
            .delete_many(keys)
            .await
            .map_err(wasi_other))
    }
}

/// A backend failure, as `spin:key-value@3.0.0`'s catch-all error.
fn v3_other(error: ferry_store::Error) -> v3::Error {
    v3::Error::Other(error.to_string())
}

/// The store behind a guest's handle, looked up in the guest's table.
fn v3_store<U>(
    accessor: &Accessor<U, KeyValueData>,
    store: &Resource<OpenStore>,
) -> wasmtime::Result<Arc<dyn KeyValue>> {
    accessor.with(|mut access| access.get().store(store))
}

impl v3::Host for KeyValueView<'_> {}

impl v3::HostStore for KeyValueView<'_> {
    async fn drop(&mut self, store: Resource<OpenStore>) -> wasmtime::Result<()> {
        self.table.delete(store)?;
        Ok(())
    }
}

impl<U> v3::HostStoreWithStore<U> for KeyValueData {
    async fn open(
        accessor: &Accessor<U, Self>,
        label: String,
    ) -> wasmtime::Result<Result<Resource<OpenStore>, v3::Error>> {
        accessor.with(|mut access| {
            Ok(KeyValueView::open(&mut access.get(), &label)?.ok_or(v3::Error::AccessDenied))
        })
    }

    async fn get(
        accessor: &Accessor<U, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<Option<Vec<u8>>, v3::Error>> {
        let store = v3_store(accessor, &store)?;
        Ok(store.get(&key).await.map_err(v3_other))
    }

    async fn set(
        accessor: &Accessor<U, Self>,
        store: Resource<OpenStore>,
        key: String,
        value: Vec<u8>,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let store = v3_store(accessor, &store)?;
        Ok(store.set(key, value).await.map_err(v3_other))
    }

    async fn delete(
        accessor: &Accessor<U, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<(), v3::Error>> {
        let store = v3_store(accessor, &store)?;
        Ok(store.delete(key).await.map_err(v3_other))
    }

    async fn exists(
        accessor: &Accessor<U, Self>,
        store: Resource<OpenStore>,
        key: String,
    ) -> wasmtime::Result<Result<bool, v3::Error>> {
        let store = v3_store(accessor, &store)?;
        Ok(store.exists(&key).await.map_err(v3_other))
    }

    /// Every key on the stream, then the outcome on the future (a failure
    /// leaves the stream empty).
    async fn get_keys(
        accessor: &Accessor<U, Self>,
        store: Resource<OpenStore>,
    ) -> wasmtime::Result<(StreamReader<String>, FutureReader<Result<(), v3::Error>>)> {
        let store = v3_store(accessor, &store)?;
        let (keys, outcome) = match store.keys().await {
            Ok(keys) => (keys, Ok(())),
            Err(e) => (Vec::new(), Err(v3_other(e))),
        };
        accessor.with(|mut access| {
            let unread = access.get().unread.clone();
            match crate::read_whole(&mut access, &unread, keys, outcome)? {
                Ok(streamed) => Ok(streamed),
                Err(why) => Ok(crate::read_whole(
                    &mut access,
                    &unread,
                    Vec::new(),
                    Err(v3::Error::Other(why)),
                )?
                .expect("nothing is held for no item")),
            }
        })
    }
}
