import dropship_test_module_that_does_not_exist  # noqa: F401


def predict_fn(data, model):
    return data
