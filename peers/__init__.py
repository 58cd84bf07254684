"""The field's curvature libraries as engines of the contract: one adapter module per library, each exposing the
contract functions the library computes exactly (``python -m xval check peers.backpack``), with the library's
conventions mapped onto the contract's in code (``peers/_common.py`` and each module's docstring).

Install without letting pip replace torch (``peers._common.INSTALL``)::

    pip install --no-deps backpack-for-pytorch curvlinops-for-pytorch nngeometry laplace-torch hessian-eigenthings \\
        opacus einops unfoldNd einconv linear_operator jaxtyping wadler_lindig opt-einsum torchmetrics \\
        lightning-utilities asdfghjkl

Importing an adapter whose library is missing raises ``xval.errors.EngineUnavailableError`` with that line.

The contract: parameters per layer, ``W_l`` row-major then ``b_l`` (``nn.Sequential.parameters()`` order);
``E = (1/N) sum_n loss_n``, ``loss_n = 0.5 ||f - y||^2`` (mse) or ``-sum_k y_k log softmax(f)_k`` (cross_entropy);
``J_n = df(x_n)/dtheta``; ``Lambda_n`` the identity (mse) or ``diag(p) - p p^T`` (cross_entropy);
``G = (1/N) sum_n J_n^T Lambda_n J_n``; KFAC ``A_l = (1/N) sum_n [z_l; 1][z_l; 1]^T``,
``G_l = (1/N) sum_n B_n^T Lambda_n B_n``; every result float64 numpy.

| convention | contract | BackPACK | curvlinops | nngeometry | laplace-torch | hessian-eigenthings | opacus |
| --- | --- | --- | --- | --- | --- | --- | --- |
| batch reduction | mean over N | the torch loss's (sum used) | the torch loss's (sum used) | mean (FIM), the given function's (Hessian) | sum (log-likelihood) | mean over batches of the given loss (sum used) | ``loss_reduction`` declared ("sum") |
| MSE per sample | ``0.5 ||f - y||^2`` | torch ``MSELoss``: ``||f - y||^2`` (x2) | same (x2) | Gaussian likelihood (x1) | ``factor`` 1/2 turns MSELoss into x1 | torch's (x2) | torch's (x2) |
| loss Hessian | exact ``Lambda`` | exact (DiagGGNExact, KFLR, SqrtGGNExact), MC (DiagGGNMC, KFAC) | exact (GGN, KFAC type-2), MC (FisherMC, KFAC "mc", its default) | exact (FIM), MC (FIM_MonteCarlo) | exact (GGN), MC (``stochastic=True``) | exact | n/a |
| KFAC bias | homogeneous ``[z; 1]`` | separate: ``kron(G, A_z)`` and ``G`` | separate by default; joint (homogeneous) with ``separate_weight_and_bias=False`` | homogeneous; factors scaled by ``sqrt(n_outputs)`` | separate | n/a | n/a |
| empirical Fisher | ``(1/N) sum g g^T`` | n/a | sum of torch's per-sample ``g g^T`` (x4 for MSE) | n/a | ``factor`` x sum of torch's ``g g^T`` (x2 for MSE) | mean of torch's ``g g^T`` (x4 for MSE) | n/a |
| cross-entropy targets | probability rows | probabilities (class indices for KFLR/KFAC/MC) | probabilities (class indices for EF) | not read by FIM | class indices | probabilities | probabilities |
| dtype | the network's | the model's | the model's | torch's default dtype in places (set to the network's here) | torch's default dtype in places (set here) | the model's | the model's |
"""
