"""Test harnesses every layer shares, imported as ``support.<module>``:

- ``embedded_hub``: a real ``mlhub up`` (component, browser, cluster layers) and its helpers;
- ``standin_http``, ``hubstandin``: stand-in HTTP servers for unit and component tests (fakes,
  and they say so);
- ``kernel_channel``, ``labpage``: a kernel's websocket and the JupyterLab page (Playwright);
- ``batchtest``, ``rmodels``, ``mlflowmodels``, ``rolling_update``, ``client_venvs``: data, models
  and clients the component tests publish and call;
- ``helmtool`` (with ``helmrun``), ``kube_schemas``, ``network_policy``, ``pod_security``: the
  Helm engine and the static checks of rendered objects (chart, cluster layers);
- ``kubetest``, ``standard_images``, ``image_containers``: the test cluster, the standard images
  in its engine, and containers of those images.
"""
