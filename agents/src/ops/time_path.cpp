#include "ops/time_path.h"

#include "runtime/cuda_support.h"
#include "ops/denoiser_ops.h"
#include "ops/linear_accumulate.h"
#ifdef MODIFF_CUDA_KERNELS
#include "cuda/time_path_kernels.h"
#endif

#include "modiff/common/error.h"

namespace modiff::agents {
namespace {

torch::Tensor step_values(int steps, const torch::TensorOptions& options) {
  return torch::arange(steps, options).view({steps, 1});
}

torch::Tensor time_features(const torch::Tensor& t, const TimePathParams& p, Kernels kernels) {
  return p.fourier_weight.defined() ? fourier_features(t, p.fourier_weight, kernels)
                                    : sinusoidal_embedding(t, p.frequencies);
}

#ifdef MODIFF_CUDA_KERNELS
using torch::autograd::AutogradContext;
using torch::autograd::variable_list;

void check_launch(bool launched, const char* what) {
  if (!launched) throw Error(std::string("internal: the time path's ") + what + " kernel did not launch");
}

std::vector<torch::Tensor> trained_parameters(const TimePathParams& p) {
  std::vector<torch::Tensor> all{p.hidden_weight, p.hidden_bias, p.out_weight, p.out_bias, p.first_weight, p.first_bias};
  if (p.fourier_weight.defined()) all.push_back(p.fourier_weight);
  return all;
}

// Where the fused join applies (the model chose modiff's kernels): gradients recorded, parameters that all
// have gradient storage to add into (flat_params.h; a frozen or partly frozen path takes the composite),
// and at most kTimePathMaxRows step values.
bool fused_join_applies(int steps, const TimePathParams& p) {
  if (!torch::GradMode::is_enabled() || steps > cuda::kTimePathMaxRows) return false;
  for (const auto& t : trained_parameters(p)) {
    if (!t.is_contiguous() || !t.requires_grad()) return false;
    if (!t.grad().defined() || !t.grad().is_contiguous()) return false;
  }
  return true;
}

float* storage_of(AutogradContext* ctx, const char* name) {
  auto s = ctx->saved_data[name].toTensor();
  return s.defined() ? s.data_ptr<float>() : nullptr;
}

// data + table[t]. Its backward pass: data's gradient as it comes, and the whole time path's parameter
// gradients (the table's, summed per step value, then down the time MLP) into their storage.
struct TimePathJoin : torch::autograd::Function<TimePathJoin> {
  static torch::Tensor forward(AutogradContext* ctx, const torch::Tensor& data, const torch::Tensor& t,
                               const torch::Tensor& table, const torch::Tensor& times, const torch::Tensor& features,
                               const torch::Tensor& pre, const torch::Tensor& post, const torch::Tensor& rows,
                               const torch::Tensor& features_param, const torch::Tensor& hidden_weight,
                               const torch::Tensor& hidden_bias, const torch::Tensor& out_weight,
                               const torch::Tensor& out_bias, const torch::Tensor& first_weight,
                               const torch::Tensor& first_bias, bool fourier, int64_t time_column,
                               int64_t activation) {
    const auto d = data.contiguous(), steps = t.contiguous();
    auto out = torch::empty_like(d);
    check_launch(cuda::launch_step_rows_forward(d.data_ptr<float>(), table.data_ptr<float>(),
                                                steps.data_ptr<int64_t>(), out.data_ptr<float>(), d.size(0),
                                                d.size(1), current_cuda_stream()),
                 "step rows'");
    ctx->save_for_backward(
        {steps, times, features, pre, post, rows, features_param, hidden_weight, out_weight, first_weight});
    // The gradient storage as it is now (as every accumulating layer takes it: linear_accumulate.h).
    const std::pair<const char*, torch::Tensor> storage[] = {
        {"g_hidden_weight", hidden_weight}, {"g_hidden_bias", hidden_bias}, {"g_out_weight", out_weight},
        {"g_out_bias", out_bias},           {"g_first_weight", first_weight}, {"g_first_bias", first_bias},
        {"g_features", features_param}};
    for (const auto& [name, param] : storage) ctx->saved_data[name] = param.grad();
    ctx->saved_data["fourier"] = fourier;
    ctx->saved_data["time_column"] = time_column;
    ctx->saved_data["activation"] = activation;
    return out;
  }

  static variable_list backward(AutogradContext* ctx, variable_list grad_outputs) {
    const auto saved = ctx->get_saved_variables();
    const auto &t = saved[0], &times = saved[1], &features = saved[2], &pre = saved[3], &post = saved[4],
               &rows = saved[5], &features_param = saved[6], &hidden_weight = saved[7], &out_weight = saved[8],
               &first_weight = saved[9];
    const bool fourier = ctx->saved_data["fourier"].toBool();
    const auto activation = static_cast<Activation>(ctx->saved_data["activation"].toInt());
    const auto grad = grad_outputs[0].contiguous();
    const long steps = rows.size(0);
    // Three kernels in order on a side stream of their own: only the optimizer waits for what they write.
    run_beside_chain(
        [&] {
          cuda::TimePathFirstLayerBackward first;
          first.batch = grad.size(0);
          first.steps = steps;
          first.in = rows.size(1);
          first.out = first_weight.size(0);
          first.ld = first_weight.size(1);
          first.offset = ctx->saved_data["time_column"].toInt();
          first.grad = grad.data_ptr<float>();
          first.t = t.data_ptr<int64_t>();
          first.weight = first_weight.data_ptr<float>();
          first.rows = rows.data_ptr<float>();
          first.weight_grad = storage_of(ctx, "g_first_weight");
          first.bias_grad = storage_of(ctx, "g_first_bias");
          auto grad_rows = torch::empty({cuda::time_path_parts(first.out), steps, first.in}, rows.options());
          first.grad_rows = grad_rows.data_ptr<float>();
          check_launch(cuda::launch_time_path_first_layer_backward(first, current_cuda_stream()), "first layer's");

          cuda::TimePathLayerBackward out;
          out.rows = steps;
          out.in = post.size(1);
          out.out = out_weight.size(0);
          out.grad_out_parts = grad_rows.size(0);
          out.grad_out = grad_rows.data_ptr<float>();
          out.weight = out_weight.data_ptr<float>();
          out.input = post.data_ptr<float>();
          out.weight_grad = storage_of(ctx, "g_out_weight");
          out.bias_grad = storage_of(ctx, "g_out_bias");
          auto grad_post = torch::empty({cuda::time_path_parts(out.out), steps, out.in}, post.options());
          out.grad_in = grad_post.data_ptr<float>();
          check_launch(cuda::launch_time_path_layer_backward(out, current_cuda_stream()), "time MLP output's");

          cuda::TimePathLayerBackward hidden;
          hidden.rows = steps;
          hidden.in = features.size(1);
          hidden.out = hidden_weight.size(0);
          hidden.grad_out_parts = grad_post.size(0);
          hidden.grad_out = grad_post.data_ptr<float>();
          hidden.activation = activation == Activation::Silu   ? cuda::TimePathActivation::Silu
                              : activation == Activation::Mish ? cuda::TimePathActivation::Mish
                                                               : cuda::TimePathActivation::Relu;
          hidden.pre = pre.data_ptr<float>();
          hidden.weight = hidden_weight.data_ptr<float>();
          hidden.input = features.data_ptr<float>();
          hidden.weight_grad = storage_of(ctx, "g_hidden_weight");
          hidden.bias_grad = storage_of(ctx, "g_hidden_bias");
          torch::Tensor grad_features;
          if (fourier) {
            grad_features = torch::empty({cuda::time_path_parts(hidden.out), steps, hidden.in}, features.options());
            hidden.grad_in = grad_features.data_ptr<float>();
          }
          check_launch(cuda::launch_time_path_layer_backward(hidden, current_cuda_stream()), "time MLP hidden layer's");
          if (fourier)
            check_launch(cuda::launch_time_path_fourier_backward(
                             grad_features.data_ptr<float>(), grad_features.size(0), steps, features.size(1) / 2,
                             times.data_ptr<float>(), features_param.data_ptr<float>(), storage_of(ctx, "g_features"),
                             current_cuda_stream()),
                         "Fourier features'");
        },
        {grad, t, times, features, pre, post, rows, features_param, hidden_weight, out_weight, first_weight});
    variable_list grads(18);  // the parameters' gradients are in their storage
    grads[0] = grad;
    return grads;
  }
};
#endif

}  // namespace

torch::Tensor time_path_rows(int steps, const TimePathParams& p, const torch::TensorOptions& options, Kernels kernels) {
  const auto h = linear(time_features(step_values(steps, options), p, kernels), p.hidden_weight, p.hidden_bias);
  return linear(activate(p.activation, h), p.out_weight, p.out_bias);
}

StepTable time_path_table(int steps, const TimePathParams& p, const torch::TensorOptions& options, Kernels kernels) {
#ifdef MODIFF_CUDA_KERNELS
  if (kernels.own && fused_join_applies(steps, p)) {
    // No history: the join's backward pass (TimePathJoin) computes the path's gradients from these.
    torch::NoGradGuard no_grad;
    StepTable s;
    s.times = step_values(steps, options);
    s.features = time_features(s.times, p, kernels);
    s.pre = torch::addmm(p.hidden_bias, s.features, p.hidden_weight.t());
    s.post = activate(p.activation, s.pre);
    s.rows = torch::addmm(p.out_bias, s.post, p.out_weight.t());
    s.table = torch::addmm(p.first_bias, s.rows, p.first_weight.narrow(1, p.time_column, s.rows.size(1)).t());
    return s;
  }
#endif
  StepTable s;
  s.table = linear_columns(time_path_rows(steps, p, options, kernels), p.first_weight, p.time_column, p.first_bias);
  return s;
}

namespace {

// table[index] whose backward pass adds each row's gradients in a fixed order: index_select's backward adds them
// with atomics on CUDA, in whatever order they land, so that a run would not repeat itself (EDP's T = 100 steps
// take this path). index_put_ with accumulate sorts the rows by index first and adds each index's rows in turn.
struct DeterministicRows : torch::autograd::Function<DeterministicRows> {
  static torch::Tensor forward(torch::autograd::AutogradContext* ctx, const torch::Tensor& table,
                               const torch::Tensor& index) {
    ctx->save_for_backward({index});
    ctx->saved_data["rows"] = table.size(0);
    return table.index_select(0, index);
  }
  static torch::autograd::variable_list backward(torch::autograd::AutogradContext* ctx,
                                                 torch::autograd::variable_list grads) {
    const auto index = ctx->get_saved_variables()[0];
    const auto& g = grads[0];
    auto grad_table = torch::zeros({ctx->saved_data["rows"].toInt(), g.size(1)}, g.options());
    c10::List<c10::optional<at::Tensor>> indices;
    indices.push_back(index);
    at::index_put_(grad_table, indices, g, /*accumulate=*/true);
    return {grad_table, torch::Tensor()};
  }
};

}  // namespace

torch::Tensor add_step_rows(const torch::Tensor& data_part, const torch::Tensor& t, const StepTable& table,
                            const TimePathParams& p) {
#ifdef MODIFF_CUDA_KERNELS
  if (table.times.defined()) {
    if (!data_part.is_cuda() || !t.is_cuda() || t.scalar_type() != torch::kLong || data_part.dim() != 2)
      throw Error("internal: a fused time path's table joined to rows its kernel does not take");
    const bool fourier = p.fourier_weight.defined();
    return TimePathJoin::apply(data_part, t, table.table, table.times, table.features, table.pre, table.post,
                               table.rows, fourier ? p.fourier_weight : p.frequencies, p.hidden_weight, p.hidden_bias,
                               p.out_weight, p.out_bias, p.first_weight, p.first_bias, fourier, p.time_column,
                               static_cast<int64_t>(p.activation));
  }
#endif
  (void)p;
  return data_part + (data_part.is_cuda() ? DeterministicRows::apply(table.table, t) : table.table.index_select(0, t));
}

}  // namespace modiff::agents
