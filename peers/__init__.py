"""The field's curvature libraries as engines of the contract: one adapter module per library, each exposing the
contract functions the library computes exactly (``python -m xval check peers.backpack``), with the library's
conventions mapped onto the contract's in code (``peers/_common.py`` and each module's docstring).

Install without letting pip replace torch (``peers._common.INSTALL``)::

    pip install --no-deps backpack-for-pytorch curvlinops-for-pytorch nngeometry laplace-torch hessian-eigenthings \\
        opacus pyhessian einops unfoldNd einconv linear_operator jaxtyping wadler_lindig opt-einsum torchmetrics \\
        lightning-utilities asdfghjkl

Importing an adapter whose library is missing raises ``xval.errors.EngineUnavailableError`` with that line.

The contract: parameters per layer, ``W_l`` row-major then ``b_l`` (``nn.Sequential.parameters()`` order);
``E = (1/N) sum_n loss_n``, ``loss_n = 0.5 ||f - y||^2`` (mse) or ``-sum_k y_k log softmax(f)_k`` (cross_entropy);
``J_n = df(x_n)/dtheta``; ``Lambda_n`` the identity (mse) or ``diag(p) - p p^T`` (cross_entropy);
``G = (1/N) sum_n J_n^T Lambda_n J_n``; KFAC ``A_l = (1/N) sum_n [z_l; 1][z_l; 1]^T``,
``G_l = (1/N) sum_n B_n^T Lambda_n B_n``; every result float64 numpy.

How each library differs from the contract, and what the adapters do about it:

- Batch reduction (the contract: the mean over N). BackPACK, curvlinops, hessian-eigenthings: the torch loss's
  reduction; the adapters hand them ``reduction="sum"`` and divide. nngeometry: the mean (FIM), the given
  function's (Hessian). laplace-torch: the sum (of log-likelihoods). opacus: told by ``loss_reduction`` ("sum").
- MSE per sample (the contract: ``0.5 ||f - y||^2``). torch's ``MSELoss`` is ``||f - y||^2`` (2x): BackPACK,
  curvlinops, hessian-eigenthings, opacus, PyHessian. nngeometry: the Gaussian likelihood (1x). laplace-torch:
  ``factor = 1/2`` turns ``MSELoss`` into 1x for curvature, but its empirical Fisher keeps 2x (a finding).
- Loss Hessian (the contract: exact ``Lambda``). Exact: BackPACK DiagGGNExact/KFLR/SqrtGGNExact, curvlinops
  GGN/KFAC "type-2", nngeometry FIM, laplace-torch GGN. Monte-Carlo, under separate ``mc_*`` names: BackPACK
  DiagGGNMC/KFAC/SqrtGGNMC, curvlinops FisherMC and KFAC "mc" (its default), nngeometry FIM_MonteCarlo.
- KFAC bias (the contract: homogeneous ``[z; 1]``). BackPACK, laplace-torch and curvlinops' default keep weight and
  bias apart (``kron(G, A_z)`` and ``G``); curvlinops with ``separate_weight_and_bias=False`` and nngeometry append
  the bias as a last column of ``W`` (nngeometry also scales the factors by ``sqrt(n_outputs)`` and its inverse).
- Empirical Fisher (the contract: ``(1/N) sum_n g_n g_n^T``). curvlinops sums torch's per-sample ``g g^T`` (4x for
  MSE); hessian-eigenthings averages them (4x for MSE); laplace-torch sums them times ``factor`` (2x for MSE).
- Cross-entropy targets (the contract: probability rows). torch's loss takes them as given wherever a library passes
  them through; BackPACK's KFLR/KFAC/MC, curvlinops' EF and most laplace-torch paths need class indices: one-hot
  rows become classes, other rows are refused.
- dtype (the contract: the network's). nngeometry, laplace-torch and PyHessian create some tensors with torch's
  default dtype (float32): the adapters set the default to the network's while they run.
"""
