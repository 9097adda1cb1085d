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
    autoHealingPolicies description distributionPolicy instanceTemplate namedPorts targetSize
    updatePolicy versions
""")
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
ACTIONS = sorted(  # InstanceGroupManagerActionsSummary's counters
    names("""
    abandoning creating creatingWithoutRetries deleting none recreating refreshing restarting
    resuming starting stopping suspending verifying
""")
)
