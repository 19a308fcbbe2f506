"""The Lambda API (rest-json, as botocore's `lambda` 2015-03-31 model describes it): a thin adapter that
lets the AWS CLI and boto3 drive the same models, forms and invoke() as the console's pages."""
