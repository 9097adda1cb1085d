"""Compute API JSON field names and enum values, as the v1 REST reference lists them.

The sandbox rejects names outside these sets with 400, as GCP does, and ignores output-only
fields a client sends back after a read-modify-write.
"""


def names(text: str) -> set[str]:
    return set(text.split())


TEMPLATE_FIELDS = names("""
    creationTimestamp description id kind name properties region selfLink sourceInstance
    sourceInstanceParams
""")
MIG_FIELDS = names("""
    allInstancesConfig autoHealingPolicies baseInstanceName creationTimestamp currentActions
    description distributionPolicy fingerprint id instanceFlexibilityPolicy instanceGroup
    instanceLifecyclePolicy instanceTemplate kind listManagedInstancesResults name namedPorts
    region resourcePolicies satisfiesPzi satisfiesPzs selfLink standbyPolicy statefulPolicy
    status targetPools targetSize targetSizePolicy targetStoppedSize targetSuspendedSize
    updatePolicy versions zone
""")
MIG_WRITABLE = names("""
    autoHealingPolicies description distributionPolicy instanceTemplate listManagedInstancesResults
    namedPorts targetSize updatePolicy versions
""")
LIST_MANAGED_INSTANCES_RESULTS = names("PAGELESS PAGINATED")
TARGET_SHAPES = names("EVEN BALANCED ANY ANY_SINGLE_ZONE")
AUTO_HEALING_FIELDS = names("healthCheck initialDelaySec")
# Update actions from least to most disruptive (minimalAction, mostDisruptiveAllowedAction).
ACTION_ORDER = ("NONE", "REFRESH", "RESTART", "REPLACE")
# Template properties a running VM takes without a restart, and with one; anything else replaces.
REFRESHABLE = names("metadata labels tags")
RESTARTABLE = REFRESHABLE | names("machineType minCpuPlatform scheduling serviceAccounts")
# Output-only parts of InstanceProperties (compute.v1 discovery document): shown on a GET,
# refused on an insert.
TEMPLATE_OUTPUT_ONLY = {
    "disks": names("architecture index kind licenses savedState shieldedInstanceInitialState"),
    "networkInterfaces": names("ipv6AccessType kind name"),
}
UPDATE_POLICY_ENUMS = {
    "type": names("PROACTIVE OPPORTUNISTIC"),
    "minimalAction": names("NONE REFRESH RESTART REPLACE"),
    "mostDisruptiveAllowedAction": names("NONE REFRESH RESTART REPLACE"),
    "replacementMethod": names("SUBSTITUTE RECREATE"),
    "instanceRedistributionType": names("PROACTIVE NONE"),
}
BACKEND_SERVICE_FIELDS = names("""
    affinityCookieTtlSec backends cdnPolicy circuitBreakers compressionMode connectionDraining
    connectionTrackingPolicy consistentHash creationTimestamp customMetrics customRequestHeaders
    customResponseHeaders description edgeSecurityPolicy enableCDN externalManagedMigrationState
    externalManagedMigrationTestingPercentage failoverPolicy fingerprint haPolicy healthChecks
    iap id ipAddressSelectionPolicy kind loadBalancingScheme localityLbPolicies localityLbPolicy
    logConfig maxStreamDuration metadatas name network networkPassThroughLbTrafficPolicy
    orchestrationInfo outlierDetection params port portName protocol region securityPolicy
    securitySettings selfLink serviceBindings serviceLbPolicy sessionAffinity
    strongSessionAffinityCookie subsetting timeoutSec tlsSettings usedBy
""")
BACKEND_SERVICE_OUTPUT = names("creationTimestamp fingerprint id kind region selfLink")
BACKEND_FIELDS = names("""
    balancingMode capacityScaler customMetrics description failover group maxConnections
    maxConnectionsPerEndpoint maxConnectionsPerInstance maxInFlightRequests
    maxInFlightRequestsPerEndpoint maxInFlightRequestsPerInstance maxRate maxRatePerEndpoint
    maxRatePerInstance maxUtilization orchestrationInfo preference trafficDuration
""")
BALANCING_MODES = names("UTILIZATION RATE CONNECTION CUSTOM_METRICS IN_FLIGHT")
# Backend service protocols whose load balancer balances requests, not connections.
HTTP_PROTOCOLS = names("HTTP HTTPS HTTP2")
MAX_RESULTS = 500  # list methods' default and largest page
ACTIONS = sorted(  # InstanceGroupManagerActionsSummary's counters
    names("""
    abandoning creating creatingWithoutRetries deleting none recreating refreshing restarting
    resuming starting stopping suspending verifying
""")
)
