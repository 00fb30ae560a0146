//! Key-value stores as guests reach them: Spin's
//! `fermyon:spin/key-value@2.0.0` (spin-sdk 2.x–5.x), over `ferry-store`.
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
use wasmtime::component::{HasData, Linker, Resource, ResourceTable};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/key-value",
        world: "ferry:key-value/key-value",
        imports: { default: async | trappable },
        with: {
            "fermyon:spin/key-value.store": super::OpenStore,
        },
    });
}

use generated::fermyon::spin::key_value as v2;

/// A store a guest opened: the backend behind its label.
pub struct OpenStore(Arc<dyn KeyValue>);

/// Granted stores, by label.
pub(crate) type Stores = BTreeMap<String, Arc<dyn KeyValue>>;

/// What one guest store gives the key-value interfaces.
pub(crate) struct KeyValueView<'a> {
    pub table: &'a mut ResourceTable,
    pub stores: &'a Stores,
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
    v2::add_to_linker::<T, KeyValueData>(linker, T::key_value)
}

/// A backend failure, as the interface's catch-all error.
fn other(error: ferry_store::Error) -> v2::Error {
    v2::Error::Other(error.to_string())
}

impl KeyValueView<'_> {
    fn store(&self, store: &Resource<OpenStore>) -> wasmtime::Result<Arc<dyn KeyValue>> {
        Ok(self.table.get(store)?.0.clone())
    }
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
