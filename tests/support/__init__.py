"""Test harnesses every layer shares, imported as ``support.<module>``:

- ``embedded_hub``: a real ``mlhub up`` (component, browser, cluster layers) and its helpers;
  ``publishing``: publishing to it and calling the models through its proxy;
  ``kube_hub``: one in Kubernetes mode, and spawning a profile in the browser;
  ``browser_publish``: the notebook cells and clicks of a publish from the panel;
- ``standin_http``, ``hubstandin``: stand-in HTTP servers for unit and component tests (fakes,
  and they say so); ``publisher_api``: the publisher's API with a fake hub and deployer, and
  ``serving_app``: the serving app in process (unit tests of the logic);
- ``kernel_channel``, ``labpage``: a kernel's websocket and the JupyterLab page (Playwright);
- ``batchtest``, ``rmodels``, ``mlflowmodels``, ``rolling_update``, ``client_venvs``: data, models
  and clients the component tests publish and call;
- ``helmtool`` (with ``helmrun``), ``kube_schemas``, ``network_policy``, ``pod_security``: the
  Helm engine and the static checks of rendered objects (chart, cluster layers), on objects
  such as ``kube_objects``' and ``kube_spawner``'s (KubeSpawner's pod without a cluster);
- ``kubetest``, ``standard_images``, ``image_containers``: the test cluster, the standard images
  in its engine, and containers of those images.

No test module imports another: what two modules share is here (fixtures shared by one layer are
in its ``conftest.py``).
"""
