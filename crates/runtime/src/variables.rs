//! Application variables as guests read them: Spin's
//! `fermyon:spin/variables@2.0.0` and `spin:variables/variables@3.0.0`, and
//! `wasi:config/store` at the draft Spin provides — three interfaces, one
//! lookup.
//!
//! The values are resolved once, when the app loads (`ferry-manifest`'s
//! `resolve_variables`), and each component sees only its own keys: the
//! context is the component's [`ComponentVariables`], shared by all its
//! sandboxes, and each store borrows it. A guest asking for a key its
//! component does not declare gets the interface's "undefined" answer, the
//! same as in Spin.

use ferry_manifest::ComponentVariables;
use wasmtime::component::{Accessor, HasData, Linker};

mod generated {
    wasmtime::component::bindgen!({
        path: "wit/variables",
        world: "ferry:variables/variables",
    });
}

use generated::fermyon::spin::variables as v2;
use generated::spin::variables::variables as v3;
use generated::wasi::config::store as wasi_config;

/// What the guest's store gives the variable interfaces.
pub(crate) trait VariablesView {
    fn variables(&self) -> &ComponentVariables;
}

struct Variables;

impl HasData for Variables {
    type Data<'a> = &'a ComponentVariables;
}

/// The interfaces a WASI 0.2 guest can import (synchronous functions).
pub(crate) fn add_to_linker<T: VariablesView + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    v2::add_to_linker::<T, Variables>(linker, |state| state.variables())?;
    wasi_config::add_to_linker::<T, Variables>(linker, |state| state.variables())?;
    Ok(())
}

/// Also `spin:variables@3.0.0`, whose `get` is an async function: only an
/// engine with the component model's concurrency can link it.
pub(crate) fn add_to_linker_concurrent<T: VariablesView + Send + 'static>(
    linker: &mut Linker<T>,
) -> wasmtime::Result<()> {
    add_to_linker(linker)?;
    v3::add_to_linker::<T, Variables>(linker, |state| state.variables())?;
    Ok(())
}

/// Why a name has no value, in Spin's terms.
enum Lookup {
    InvalidName(String),
    Undefined(String),
}

fn lookup<'a>(variables: &'a ComponentVariables, name: &str) -> Result<&'a str, Lookup> {
    ferry_manifest::check_variable_name(name).map_err(Lookup::InvalidName)?;
    variables.get(name).ok_or_else(|| {
        Lookup::Undefined(format!(
            "the component has no variable `{name}` (declare it under `[component.<id>.variables]`)"
        ))
    })
}

impl v2::Host for &ComponentVariables {
    fn get(&mut self, name: String) -> Result<String, v2::Error> {
        match lookup(self, &name) {
            Ok(value) => Ok(value.to_owned()),
            Err(Lookup::InvalidName(why)) => Err(v2::Error::InvalidName(why)),
            Err(Lookup::Undefined(why)) => Err(v2::Error::Undefined(why)),
        }
    }
}

impl v3::Host for &ComponentVariables {}

impl<U> v3::HostWithStore<U> for Variables {
    async fn get(accessor: &Accessor<U, Self>, name: String) -> Result<String, v3::Error> {
        accessor.with(|mut access| match lookup(access.get(), &name) {
            Ok(value) => Ok(value.to_owned()),
            Err(Lookup::InvalidName(why)) => Err(v3::Error::InvalidName(why)),
            Err(Lookup::Undefined(why)) => Err(v3::Error::Undefined(why)),
        })
    }
}

impl wasi_config::Host for &ComponentVariables {
    /// A name the component lacks (or that cannot be a name) is `none`: a
    /// configuration store answers "not set", not an error.
    fn get(&mut self, key: String) -> Result<Option<String>, wasi_config::Error> {
        Ok(lookup(self, &key).ok().map(str::to_owned))
    }

    fn get_all(&mut self) -> Result<Vec<(String, String)>, wasi_config::Error> {
        Ok(self
            .iter()
            .map(|(key, value)| (key.to_owned(), value.to_owned()))
            .collect())
    }
}
