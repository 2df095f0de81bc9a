"""A subset of Shopify's GraphQL Admin API schema (2026-10): the types, fields, arguments
and enum values below are spelt exactly as Shopify's, so a query that validates here uses
only names Shopify knows. Fields Shopify has and tests don't need are left out, which makes
this stricter than the real schema, never kinder."""

from __future__ import annotations

from graphql import GraphQLSchema, build_schema

SDL = """
schema {
  query: QueryRoot
  mutation: Mutation
}

scalar DateTime
scalar URL
scalar UnsignedInt64
scalar Decimal

type QueryRoot {
  shop: Shop!
  currentAppInstallation: AppInstallation!
  webhookSubscriptions(
    first: Int
    after: String
    last: Int
    before: String
    reverse: Boolean = false
    sortKey: WebhookSubscriptionSortKeys = ID
    query: String
    format: WebhookSubscriptionFormat
    topics: [WebhookSubscriptionTopic!]
    uri: String
  ): WebhookSubscriptionConnection!
  webhookSubscription(id: ID!): WebhookSubscription
  orders(
    first: Int
    after: String
    last: Int
    before: String
    reverse: Boolean = false
    sortKey: OrderSortKeys = PROCESSED_AT
    query: String
    savedSearchId: ID
  ): OrderConnection!
  order(id: ID!): Order
  ordersCount(limit: Int = 10000, query: String, savedSearchId: ID): Count
  bulkOperation(id: ID!): BulkOperation
  currentBulkOperation(type: BulkOperationType = QUERY): BulkOperation
}

type Mutation {
  webhookSubscriptionCreate(
    topic: WebhookSubscriptionTopic!
    webhookSubscription: WebhookSubscriptionInput!
  ): WebhookSubscriptionCreatePayload
  webhookSubscriptionDelete(id: ID!): WebhookSubscriptionDeletePayload
  bulkOperationRunQuery(
    query: String!
    groupObjects: Boolean! = false
  ): BulkOperationRunQueryPayload
  bulkOperationCancel(id: ID!): BulkOperationCancelPayload
}

type Shop {
  id: ID!
  name: String!
  myshopifyDomain: String!
  email: String!
  currencyCode: CurrencyCode!
  ianaTimezone: String!
}

type AppInstallation {
  id: ID!
  accessScopes: [AccessScope!]!
}

type AccessScope {
  handle: String!
  description: String!
}

type ApiVersion {
  handle: String!
  displayName: String!
  supported: Boolean!
}

enum WebhookSubscriptionTopic {
  APP_UNINSTALLED
  ORDERS_CANCELLED
  ORDERS_CREATE
  ORDERS_DELETE
  ORDERS_EDITED
  ORDERS_FULFILLED
  ORDERS_PAID
  ORDERS_PARTIALLY_FULFILLED
  ORDERS_UPDATED
  SHOP_UPDATE
}

enum WebhookSubscriptionFormat {
  JSON
  XML
}

enum WebhookSubscriptionSortKeys {
  CREATED_AT
  ID
}

input WebhookSubscriptionInput {
  uri: String
  callbackUrl: URL
  format: WebhookSubscriptionFormat
  filter: String
  includeFields: [String!]
  metafieldNamespaces: [String!]
}

type WebhookSubscription {
  id: ID!
  legacyResourceId: UnsignedInt64!
  topic: WebhookSubscriptionTopic!
  uri: String!
  format: WebhookSubscriptionFormat!
  filter: String
  includeFields: [String!]!
  apiVersion: ApiVersion!
  createdAt: DateTime!
  updatedAt: DateTime!
}

type WebhookSubscriptionConnection {
  edges: [WebhookSubscriptionEdge!]!
  nodes: [WebhookSubscription!]!
  pageInfo: PageInfo!
}

type WebhookSubscriptionEdge {
  cursor: String!
  node: WebhookSubscription!
}

type PageInfo {
  hasNextPage: Boolean!
  hasPreviousPage: Boolean!
  startCursor: String
  endCursor: String
}

type UserError {
  field: [String!]
  message: String!
}

type WebhookSubscriptionCreatePayload {
  userErrors: [UserError!]!
  webhookSubscription: WebhookSubscription
}

type WebhookSubscriptionDeletePayload {
  deletedWebhookSubscriptionId: ID
  userErrors: [UserError!]!
}

enum CurrencyCode {
  AUD
  CAD
  EUR
  GBP
  JPY
  USD
}

enum OrderDisplayFinancialStatus {
  AUTHORIZED
  EXPIRED
  PAID
  PARTIALLY_PAID
  PARTIALLY_REFUNDED
  PENDING
  REFUNDED
  VOIDED
}

enum OrderSortKeys {
  CREATED_AT
  CUSTOMER_NAME
  DESTINATION
  FINANCIAL_STATUS
  FULFILLMENT_STATUS
  ID
  NUMBER
  ORDER_NUMBER
  PO_NUMBER
  PROCESSED_AT
  RELEVANCE
  TOTAL_ITEMS_QUANTITY
  TOTAL_PRICE
  UPDATED_AT
}

type MoneyV2 {
  amount: Decimal!
  currencyCode: CurrencyCode!
}

type MoneyBag {
  shopMoney: MoneyV2!
  presentmentMoney: MoneyV2!
}

type Order {
  id: ID!
  legacyResourceId: UnsignedInt64!
  name: String!
  email: String
  createdAt: DateTime!
  updatedAt: DateTime!
  processedAt: DateTime!
  cancelledAt: DateTime
  closed: Boolean!
  test: Boolean!
  currencyCode: CurrencyCode!
  displayFinancialStatus: OrderDisplayFinancialStatus
  totalPriceSet: MoneyBag!
  lineItems(
    first: Int
    after: String
    last: Int
    before: String
    reverse: Boolean = false
  ): LineItemConnection!
}

type LineItem {
  id: ID!
  name: String!
  quantity: Int!
  sku: String
  originalUnitPriceSet: MoneyBag!
}

type LineItemConnection {
  edges: [LineItemEdge!]!
  nodes: [LineItem!]!
  pageInfo: PageInfo!
}

type LineItemEdge {
  cursor: String!
  node: LineItem!
}

type Count {
  count: Int!
  precision: CountPrecision!
}

enum CountPrecision {
  AT_LEAST
  EXACT
}

type BulkOperation {
  completedAt: DateTime
  createdAt: DateTime!
  errorCode: BulkOperationErrorCode
  fileSize: UnsignedInt64
  id: ID!
  objectCount: UnsignedInt64!
  partialDataUrl: URL
  query: String!
  rootObjectCount: UnsignedInt64!
  status: BulkOperationStatus!
  type: BulkOperationType!
  url: URL
}

enum BulkOperationStatus {
  CANCELED
  CANCELING
  COMPLETED
  CREATED
  EXPIRED
  FAILED
  RUNNING
}

enum BulkOperationErrorCode {
  ACCESS_DENIED
  INTERNAL_SERVER_ERROR
  TIMEOUT
}

enum BulkOperationType {
  MUTATION
  QUERY
}

type BulkOperationUserError {
  code: BulkOperationUserErrorCode
  field: [String!]
  message: String!
}

enum BulkOperationUserErrorCode {
  INVALID
  LIMIT_REACHED
  OPERATION_IN_PROGRESS
}

type BulkOperationRunQueryPayload {
  bulkOperation: BulkOperation
  userErrors: [BulkOperationUserError!]!
}

type BulkOperationCancelPayload {
  bulkOperation: BulkOperation
  userErrors: [UserError!]!
}

type OrderConnection {
  edges: [OrderEdge!]!
  nodes: [Order!]!
  pageInfo: PageInfo!
}

type OrderEdge {
  cursor: String!
  node: Order!
}
"""


def admin_schema() -> GraphQLSchema:
    return build_schema(SDL)
