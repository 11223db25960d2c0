"""Process plumbing both the ingress and the workers share: metrics exposition and tracing."""
