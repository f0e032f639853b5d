//! Trainable parameters with shapes known only at run time.
//!
//! dfdx's `TensorCollection` needs compile-time shapes, so parameters are plain dfdx tensors
//! whose gradients we find by tensor id after `backward()`. Each keeps a host copy of its values
//! (`value`), which the optimiser updates and uploads with `copy_from` — that keeps the tensor's
//! id, so the next step's gradients land under the same key.

use anyhow::{anyhow, Result};
use dfdx::prelude::*;

use crate::ops::Tensor2;

/// The dfdx tensor behind a parameter: a matrix (weights) or a vector (biases).
#[derive(Debug, Clone)]
pub enum ParamTensor {
    Matrix(Tensor2),
    Vector(Tensor<(usize,), f32, Cpu>),
}

/// One named parameter, e.g. `conv1.weight`.
#[derive(Debug, Clone)]
pub struct Param {
    /// `<layer_name>.weight` or `<layer_name>.bias`, as in model.safetensors.
    pub name: String,
    /// The shape written to model.safetensors: `[out, in, kh, kw]`, `[out, in]` or `[out]`.
    pub shape: Vec<usize>,
    /// Host copy of the values, row-major in `shape`.
    pub value: Vec<f32>,
    pub tensor: ParamTensor,
}

impl Param {
    /// A weight matrix `(rows, cols)` whose saved shape is `shape` (same number of elements).
    pub fn matrix(
        dev: &Cpu,
        name: String,
        shape: Vec<usize>,
        rows: usize,
        cols: usize,
        value: Vec<f32>,
    ) -> Self {
        assert_eq!(rows * cols, value.len());
        assert_eq!(shape.iter().product::<usize>(), value.len());
        let tensor = ParamTensor::Matrix(dev.tensor_from_vec(value.clone(), (rows, cols)));
        Self {
            name,
            shape,
            value,
            tensor,
        }
    }

    /// A bias vector.
    pub fn vector(dev: &Cpu, name: String, value: Vec<f32>) -> Self {
        let len = value.len();
        let tensor = ParamTensor::Vector(dev.tensor_from_vec(value.clone(), (len,)));
        Self {
            name,
            shape: vec![len],
            value,
            tensor,
        }
    }

    pub fn len(&self) -> usize {
        self.value.len()
    }

    pub fn is_empty(&self) -> bool {
        self.value.is_empty()
    }

    /// The tensor's id, the key of its gradient.
    pub fn id(&self) -> UniqueId {
        let mut ids = dfdx::optim::UnusedTensors::default();
        match &self.tensor {
            ParamTensor::Matrix(t) => ids.add(t),
            ParamTensor::Vector(t) => ids.add(t),
        }
        ids.ids[0]
    }

    /// The untraced tensor (evaluation mode).
    pub fn matrix_tensor(&self) -> &Tensor2 {
        match &self.tensor {
            ParamTensor::Matrix(t) => t,
            ParamTensor::Vector(_) => panic!("{} is a vector, not a matrix", self.name),
        }
    }

    pub fn vector_tensor(&self) -> &Tensor<(usize,), f32, Cpu> {
        match &self.tensor {
            ParamTensor::Vector(t) => t,
            ParamTensor::Matrix(_) => panic!("{} is a matrix, not a vector", self.name),
        }
    }

    /// Moves this parameter's gradient out of `grads` (zeros when the loss did not reach it).
    pub fn take_grad(&self, grads: &mut Gradients<f32, Cpu>) -> Result<Vec<f32>> {
        let buffer = match &self.tensor {
            ParamTensor::Matrix(t) => grads.get_or_alloc_mut(t),
            ParamTensor::Vector(t) => grads.get_or_alloc_mut(t),
        }
        .map_err(|e| anyhow!("allocating the gradient of {}: {e:?}", self.name))?;
        let grad = std::mem::take(&mut **buffer);
        if grad.len() == self.len() {
            Ok(grad)
        } else {
            Err(anyhow!(
                "gradient of {} has {} values, expected {}",
                self.name,
                grad.len(),
                self.len()
            ))
        }
    }

    /// Copies `value` into the tensor in place, keeping the tensor's id.
    pub fn upload(&mut self) {
        match &mut self.tensor {
            ParamTensor::Matrix(t) => t.copy_from(&self.value),
            ParamTensor::Vector(t) => t.copy_from(&self.value),
        }
    }

    /// Replaces the values (e.g. from a checkpoint) and uploads them.
    pub fn set_values(&mut self, values: &[f32]) -> Result<()> {
        if values.len() != self.len() {
            return Err(anyhow!(
                "{}: expected {} values, found {}",
                self.name,
                self.len(),
                values.len()
            ));
        }
        self.value.copy_from_slice(values);
        self.upload();
        Ok(())
    }
}
