#!/usr/bin/env bash
# Build the dropship inference image and push it to Amazon ECR; prints the image URI.
#
#   container/build_and_push.sh [VERSION]
#
# VERSION defaults to `git describe`. Environment: IMAGE_NAME (default dropship-serve),
# AWS_REGION (default: the AWS CLI's region), PLATFORM (default linux/amd64).
# Needs the AWS CLI v2 with credentials, and Docker.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
name="${IMAGE_NAME:-dropship-serve}"
version="${1:-$(git -C "$here" describe --tags --always --dirty 2>/dev/null || true)}"
platform="${PLATFORM:-linux/amd64}"
region="${AWS_REGION:-${AWS_DEFAULT_REGION:-$(aws configure get region || true)}}"

if [[ -z "$version" || "$version" == "latest" ]]; then
    echo "give a version (not 'latest'): $0 VERSION" >&2
    exit 2
fi
if [[ -z "$region" ]]; then
    echo "set AWS_REGION" >&2
    exit 2
fi

# Create the repository on first use: immutable tags, scanned on push.
if ! repository_uri="$(aws ecr describe-repositories --region "$region" --repository-names "$name" \
        --query 'repositories[0].repositoryUri' --output text 2>/dev/null)"; then
    repository_uri="$(aws ecr create-repository --region "$region" --repository-name "$name" \
        --image-tag-mutability IMMUTABLE --image-scanning-configuration scanOnPush=true \
        --query 'repository.repositoryUri' --output text)"
    echo "created ECR repository $repository_uri" >&2
fi
registry="${repository_uri%%/*}"
image="$repository_uri:$version"

aws ecr get-login-password --region "$region" | docker login --username AWS --password-stdin "$registry" >&2
docker build --platform "$platform" --file "$here/Dockerfile" --tag "$image" "$here" >&2
docker push "$image" >&2

echo "$image"
